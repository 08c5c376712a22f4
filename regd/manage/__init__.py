"""The management services: the rules behind the management API, the CLI and the web
pages, which only translate their input and output. Only services touch ``metadata/``
and ``storage/``."""
