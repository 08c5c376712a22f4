"""Content trust: which stored manifests are signatures of which image, whether they
verify against a project's trust anchors, and the pull policy built on both.

Layers, as elsewhere: ``formats`` (media types, pure), ``x509chain``, ``cosign`` and
``notation`` (pure verification: bytes in, a ``Verdict`` out), and ``service`` (the pull
check: metadata lookups and cached verdicts, no HTTP).
"""
