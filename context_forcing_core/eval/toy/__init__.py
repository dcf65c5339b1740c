"""Toy-world evaluation: the scene world's memory benchmark and its report, and the teacher and student probes
(each module runs with ``python -m``; see ``context_forcing_core/eval/README.md``).
"""
