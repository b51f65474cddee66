"""Search methods behind one small interface (`SearchMethod`)."""

from service.search.base import SearchMethod, Suggestion, TrialRecord
from service.search.grid_search import GridSearch
from service.search.random_search import RandomSearch
from service.spec import SweepSpec

_METHODS: dict[str, type[SearchMethod]] = {"random": RandomSearch, "grid": GridSearch}


def make_search_method(spec: SweepSpec) -> SearchMethod:
    """The search method a spec asks for."""
    return _METHODS[spec.method](spec)


__all__ = [
    "GridSearch",
    "RandomSearch",
    "SearchMethod",
    "Suggestion",
    "TrialRecord",
    "make_search_method",
]
