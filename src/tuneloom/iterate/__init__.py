"""The feedback loop's last steps: `tuneloom iterate` (retrain on reviewed feedback, gate, promote) and
`tuneloom monitor` (canary against production on live feedback; promote or roll back).

    run.py      iterate_task: the stages of one turn, resumable after a crash; exit codes
    dataset.py  the next dataset version: task data + weighted feedback rows; held-out feedback rows
    source.py   the review queue's API as iterate uses it (FeedbackSource, ReviewedFeedback)
    summary.py  what a turn changed and why (IterateSummary), the held-out feedback rule
    lock.py     one iterate per task at a time (a file lock in the workspace)
    monitor.py  monitor_canary: both sides' figures with intervals, the rules, the registry move
    stats.py    Wilson, Newcombe and normal intervals
"""

from tuneloom.iterate.lock import IterateBusy
from tuneloom.iterate.monitor import CanaryReport, monitor_canary
from tuneloom.iterate.run import EXIT_GATE_FAILED, EXIT_NOTHING_NEW, EXIT_PROMOTED, EXIT_RETRY, iterate_task
from tuneloom.iterate.source import FeedbackSource, FeedbackUnavailable, ReviewedFeedback
from tuneloom.iterate.summary import summary_lines

__all__ = [
    "EXIT_GATE_FAILED",
    "EXIT_NOTHING_NEW",
    "EXIT_PROMOTED",
    "EXIT_RETRY",
    "CanaryReport",
    "FeedbackSource",
    "FeedbackUnavailable",
    "IterateBusy",
    "ReviewedFeedback",
    "iterate_task",
    "monitor_canary",
    "summary_lines",
]
