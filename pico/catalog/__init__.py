"""What exists, without torch: model ids and aliases, families, pipelines and their routes, samplers.

Schemas, routes, the CLI and the engine all read names from here; only ``pico/pipelines/``
imports torch and Diffusers.
"""
