"""A sweep driven by hand with a scripted objective, for tests of search methods."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

from ktsweep.service.search import Suggestion, TrialRecord, make_search_method
from ktsweep.service.search.bayes_search import KerasTunerBayesSearch

START = datetime(2024, 1, 1, tzinfo=timezone.utc)

SPACE = {"x": {"min": 0.0, "max": 1.0}, "c": {"values": ["good", "bad"]}}


def loss(config, epochs=1):
    """A scripted objective: best near x = 0.3 with c = good, better with more epochs."""
    penalty = 0.0 if config.get("c", "good") == "good" else 0.5
    return (config["x"] - 0.3) ** 2 + penalty + 1.0 / (epochs + 1)


class ScriptedSweep:
    """Drives a sweep by hand, as the scheduler does: fill the free slots, then end the oldest
    running trial (every `fail_every`-th fails after one report). Each search method given to
    `fill` and `end_oldest` sees the same trials; their suggestions must agree."""

    def __init__(self, parallelism=1, fail_every=None):
        self.parallelism = parallelism
        self.fail_every = fail_every
        self.records: list[TrialRecord] = []
        self.suggestions: list[Suggestion] = []

    @property
    def running(self):
        return [record for record in self.records if record.state == "running"]

    def fill(self, *methods) -> list[Suggestion]:
        made = []
        while len(self.running) < self.parallelism:
            number = len(self.records)
            answers = [method.suggest(number, self.records) for method in methods]
            answers = [Suggestion(a) if isinstance(a, dict) else a for a in answers]
            assert all(answer == answers[0] for answer in answers), (number, answers)
            if answers[0] is None:
                break
            suggestion = answers[0]
            epochs = suggestion.epochs or 1
            first = (suggestion.initial_epoch or 0) + 1
            value = loss(suggestion.hyperparameters, first)
            record = TrialRecord(
                number,
                suggestion.hyperparameters,
                "running",
                objective=value,
                epochs=first,
                history=[{"step": first, "metrics": {"val_loss": value}}],
                parent=suggestion.parent,
            )
            record.final_epochs = epochs
            self.records.append(record)
            self.suggestions.append(suggestion)
            made.append(suggestion)
        return made

    def end_oldest(self, *methods) -> bool:
        if not self.running:
            return False
        record = self.running[0]
        if self.fail_every and record.number % self.fail_every == self.fail_every - 1:
            record.state = "failed"
        else:
            epochs = record.final_epochs
            value = loss(record.hyperparameters, epochs)
            record.state, record.objective, record.epochs = "completed", value, epochs
            earlier = [entry for entry in record.history if entry["step"] < epochs]
            record.history = [*earlier, {"step": epochs, "metrics": {"val_loss": value}}]
        record.finished_at = START + timedelta(seconds=record.number)
        for method in methods:
            method.observe(copy.deepcopy(record))
        return True

    def run(self, trials, *methods):
        """Go on until `trials` trials exist (or the search ends)."""
        while len(self.records) < trials:
            self.fill(*methods)
            if len(self.records) >= trials or not self.end_oldest(*methods):
                break

    def restored(self, spec, make=make_search_method):
        """A new method for the same spec (made by `make`), restored from (a copy of) the
        trials so far."""
        method = make(spec)
        method.restore(copy.deepcopy(self.records))
        return method


def keras_tuner_bayes(spec) -> KerasTunerBayesSearch:
    """What `method: bayes` runs where PyTorch is not installed: Keras Tuner's oracle."""
    return KerasTunerBayesSearch(spec, space=make_search_method(spec).space)


def run_to_the_end(search) -> list[Suggestion]:
    """Every suggestion of a search whose trials end in the order they started, each
    completing with its `x` as `val_loss` at its last epoch."""
    suggestions, running = [], []
    while True:
        suggestion = search.suggest(len(suggestions), [])
        if suggestion is None:
            if not search.is_waiting([]):
                return suggestions
            search.observe(running.pop(0))
            continue
        assert isinstance(suggestion, Suggestion)
        number = len(suggestions)
        suggestions.append(suggestion)
        loss = suggestion.hyperparameters["x"]
        history = [{"step": suggestion.epochs, "metrics": {"val_loss": loss}}]
        running.append(
            TrialRecord(number, suggestion.hyperparameters, "completed", loss, 1, history)
        )
