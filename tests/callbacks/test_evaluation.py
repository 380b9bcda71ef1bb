"""The one periodic evaluation callback: when it evaluates and where the numbers go; what is
measured is its evaluator's (any object with the protocol of ``metrics/evaluator.py``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

from gan_research.callbacks.evaluation import Evaluation
from gan_research.metrics.evaluator import Evaluator
from gan_research.utils.data_spec import DataKind


class FakeEvaluator:
    """Counts its calls; flags a collapse from ``collapse_at`` on."""

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.IMAGES,)

    def __init__(self, collapse_at: int | None = None) -> None:
        self.feature_network = "none"
        self.last_collapse_reasons: list[str] = []
        self.prepared: list[Any] = []
        self.calls: list[tuple[Any, int]] = []
        self.collapse_at = collapse_at

    def prepare(self, datamodule: Any) -> None:
        self.prepared.append(datamodule)

    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        self.calls.append((module, world_size))
        collapsed = self.collapse_at is not None and len(self.calls) >= self.collapse_at
        self.last_collapse_reasons = ["modes_recovered 1 < 4"] if collapsed else []
        return {"val/score": float(len(self.calls)), "val/collapse": float(collapsed)}

    def summary(self) -> dict[str, Any]:
        return {"num_samples": 0, "feature_network": self.feature_network}


class Logger:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((step, dict(metrics)))


def _trainer(step: int, logger: Logger) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step,
        world_size=2,
        loggers=[logger],
        callback_metrics={},
        should_stop=False,
        datamodule="dm",
    )


def test_schedule_start_interval_end_and_where_results_go() -> None:
    evaluator = FakeEvaluator()
    assert isinstance(evaluator, Evaluator)  # the protocol the callback and gan-eval rely on
    callback = Evaluation(evaluator, every_n_steps=2, eval_at_start=True, num_samples=64)
    logger, module = Logger(), object()
    trainer = _trainer(0, logger)
    callback.setup(trainer, module, "fit")
    assert evaluator.prepared == ["dm"]
    callback.on_train_start(trainer, module)
    for step in (1, 2, 3):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, module)
    callback.on_train_end(trainer, module)  # step 3 again at the end: evaluated once
    assert [step for step, _ in logger.logged] == [0, 2, 3]
    assert [world for _, world in evaluator.calls] == [2, 2, 2]  # each process its share
    assert "val/eval_seconds" in logger.logged[0][1]
    assert float(trainer.callback_metrics["val/score"]) == 3.0
    assert not trainer.should_stop


def test_stop_on_collapse_reads_the_evaluators_flag() -> None:
    evaluator = FakeEvaluator(collapse_at=2)
    callback = Evaluation(evaluator, every_n_steps=1, stop_on_collapse=True)
    callback.prepare("dm")
    trainer = _trainer(1, Logger())
    callback.on_train_batch_end(trainer, object())
    assert not trainer.should_stop
    trainer.global_step = 2
    callback.on_train_batch_end(trainer, object())
    assert trainer.should_stop and callback.collapse_reasons == ["modes_recovered 1 < 4"]
