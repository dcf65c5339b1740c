"""Toy-world evaluation: the memory benchmarks of the panning and scene worlds, their reports, and the teacher and
student probes (each module runs with ``python -m``; see ``context_forcing_core/eval/README.md``).
"""
