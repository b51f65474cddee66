"""The Keras Tuner internals the search methods rely on.

Contract: tests/compat/test_keras_tuner.py.

`KerasTunerOracleSearch` drives an oracle ask-and-tell, outside a tuner, and rebuilds its state
after a controller restart: Keras Tuner's public API only lets a tuner create trials and report
on them, not hand an oracle trials it did not create, nor replay its random draws, nor place a
trial in a Hyperband bracket. These functions are the oracle's private members that do it.
"""

from __future__ import annotations

from typing import Any


def set_project_dir(oracle: Any, directory: str, project_name: str) -> None:
    """Gives an oracle the folder it saves its state in."""
    # A tuner does this for its oracle; an oracle driven on its own has no public way.
    oracle._set_project_dir(directory, project_name)


def random_values(oracle: Any) -> dict[str, Any] | None:
    """The oracle's next random draw of values (None when the space is exhausted)."""
    # What `populate_space` of the random, Bayesian and Hyperband oracles draws a trial with.
    return oracle._random_values()


def seed_state(oracle: Any) -> Any:
    """The oracle's random state, for `set_seed_state` to put back."""
    # `_seed_state` is the whole of the state `_random_values` moves on.
    return oracle._seed_state


def set_seed_state(oracle: Any, state: Any) -> None:
    """Puts back a random state taken with `seed_state`."""
    # As above: undoes a draw that did not give the trial being restored.
    oracle._seed_state = state


def record_values(oracle: Any, trial: Any) -> None:
    """Makes the oracle remember `trial`'s values, so it never creates them again."""
    # What `create_trial` does for each trial it creates, which restored trials bypass.
    oracle._record_values(trial)


# `HyperbandOracle` keeps its brackets, and computes their sizes and epoch budgets, in private
# members only; `HyperbandSearch.restore` puts each restored trial into its bracket and round.


def remove_completed_brackets(oracle: Any) -> None:
    """Drops the Hyperband brackets whose last round is full (as `populate_space` starts)."""
    # A restored trial must not be placed in a bracket Hyperband has finished with.
    oracle._remove_completed_brackets()


def brackets(oracle: Any) -> list[dict[str, Any]]:
    """The open Hyperband brackets: `{"bracket_num", "rounds": [[{"past_id", "id"}, ...]]}`."""
    # The only record of which trial sits in which round; restored trials are added to it.
    return oracle._brackets


def round_size(oracle: Any, bracket_num: int, round_num: int = 0) -> int:
    """How many trials round `round_num` of bracket `bracket_num` holds."""
    # Hyperband's own sizing, so a restored first round fills as the oracle would fill it.
    return oracle._get_size(bracket_num, round_num)


def round_epochs(oracle: Any, bracket_num: int, round_num: int = 0) -> int:
    """The epochs a trial of round `round_num` of bracket `bracket_num` trains to."""
    # Hyperband's own budget, the `tuner/epochs` it gives the round's trials.
    return oracle._get_epochs(bracket_num, round_num)


def current_bracket(oracle: Any) -> int:
    """The number of the bracket Hyperband is filling now (its trials' `tuner/bracket`)."""
    # What `populate_space` puts in `tuner/bracket`; no public attribute holds it.
    return oracle._current_bracket


def start_new_bracket(oracle: Any) -> dict[str, Any]:
    """Opens the next Hyperband bracket and returns it."""
    # As `populate_space` opens one when every open bracket's first round is full.
    oracle._increment_bracket_num()
    oracle._start_new_bracket()
    return oracle._brackets[-1]
