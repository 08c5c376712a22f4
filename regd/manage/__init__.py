"""Management services: the rules behind the Harbor API, the CLI and the web pages.

Each front end only translates its input and output; the checks and the metadata and
storage calls live here, once.
"""
