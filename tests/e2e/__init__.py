"""End-to-end tests: real clients (docker, skopeo, ctr) against a running registry.

Layout: ``tools`` finds programs and runs them with a timeout, ``daemons`` starts and
stops dockerd and the registry under test, ``images`` builds test images;
``conftest`` turns those into fixtures. Set ``REGD_E2E_TARGET=distribution`` to run the
same tests against CNCF distribution (``docker-registry``), which is how the tests
themselves are checked.
"""
