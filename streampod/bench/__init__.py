"""``streampod bench``: streampod against the per-message baseline, the in-process limit and Quix Streams.

Every variant imports the same transform from :mod:`streampod.bench.transform`. Modules here import
nothing heavy at package level: the Quix Streams runner runs this folder's files in a virtual
environment of its own, where only the standard library, orjson and quixstreams are installed.
"""
