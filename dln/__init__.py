"""dln: a diagonal linear network theory simulator (see README.md, THEORY.md, DESIGN.md)."""
from .errors import DLNError
from .problem import Problem, make_problem, load_problem, save_problem
from .model import State, initial_state
from . import methods

__version__ = "0.1.0"
