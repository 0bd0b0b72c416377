"""Training methods: what one step computes from a batch, and what a method keeps besides the student.

Each module holds one method; the loop (training/loop.py) knows none of them. To add a method, subclass
`methods.base.Method` in a module of its own and give it a script of a few lines (see train_bcp.py, README).
"""

from methods.base import Method, StepOutput
from methods.bcp import BCP
from methods.cps import CPS
from methods.supervised import Supervised
from methods.uamt import UAMT, UAMTUnlabel
from methods.unimatch import UniMatch

METHODS: dict[str, type[Method]] = {m.name: m for m in (Supervised, UAMT, UAMTUnlabel, BCP, CPS, UniMatch)}

__all__ = ["BCP", "CPS", "METHODS", "Method", "StepOutput", "Supervised", "UAMT", "UAMTUnlabel", "UniMatch"]
