"""The app templates, shipped inside streampod as ``streampod.templates`` (package data).

``streampod new NAME --template T`` copies the folder ``T/`` (python, sklearn, pyspark) into a new
project; ``runtime/`` is not a template but the app container's runtime, ``streampod.app``.
"""
