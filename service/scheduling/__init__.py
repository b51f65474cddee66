"""The scheduler's parts, split by responsibility (as Ray Tune splits its controller from its
`TrialScheduler`):

- `SweepRuntime` (`sweep_runtime`): what is kept of one sweep while it runs, with one clean-up;
- `TrialLauncher` (`trial_launcher`): trial specs, launch, retry, and recovery after a restart;
- `ktsweep.service.report_answers.ReportAnswers`: the answer to reports (early termination),
  from the database alone;
- `ktsweep.service.scheduler.Scheduler`: the loop that ties them together.

A trial's states and their one writer: `ktsweep.lifecycle` and `ktsweep.service.trial_states`.
"""

from ktsweep.service.scheduling.sweep_runtime import SweepRuntime, SweepRuntimes
from ktsweep.service.scheduling.trial_launcher import TrialLauncher

__all__ = ["SweepRuntime", "SweepRuntimes", "TrialLauncher"]
