"""Content trust: which stored manifests are signatures of which image, whether they
verify against a project's trust anchors, and the pull policy built on both.

Layers, as elsewhere: ``regd/signing.py`` (media types and anchor kinds; pure, and
outside this package because metadata's queries use it too), ``anchors``, ``x509chain``,
``cosign``, ``bundle`` (Sigstore bundles) and ``notation`` (pure verification: bytes in, a
``Verdict`` out), and ``service`` (the pull check: metadata lookups and cached verdicts,
no HTTP).
"""
