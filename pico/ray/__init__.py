"""PICO on Ray: ``pico serve --ray`` and ``pico batch --ray`` (the optional ``pico[ray]`` extra).

Nothing outside this package imports it unless ``--ray`` is given, so Ray stays optional.

- ``cluster.py``     connect to (or start) a cluster, deploy the Serve application, shut down
- ``deployment.py``  the Serve deployment: one replica = one PICO Engine, multiplexed by model
- ``board.py``       the notice board deployment: replicas, jobs and signals every front door shares
- ``backend.py``     what the front door calls instead of a local engine (the same methods)
- ``jobs.py``        the front door's Jobs, published to the board so any front door sees any job
- ``server.py``      the ``pico serve --ray`` wiring
- ``batch.py``       ``pico batch --ray``: the jobs spread over the replicas
"""
