"""taskyard's benchmark suite: ``.venv/bin/python -m bench [--smoke] [--only NAMES] [--ray/--no-ray] [--json PATH]``.

One module per measurement (``e2e``, ``throughput``, ``logs``, ``kill``, ``scale``, ``footprint``,
``ray_side`` with ``ray_child`` and ``ray_jobs``); ``harness`` holds the control-plane handle and
bounded waits, ``figures`` the results and their statistics, ``plan`` the counts, ``report`` the
table and the JSON file. What each measures, and how: ``bench/README.md``.
"""
