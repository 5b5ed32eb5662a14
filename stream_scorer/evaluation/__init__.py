"""The evaluation layer: live metrics, drift detectors and alerts, as pure streaming objects.

Nothing here imports Kafka. :class:`~stream_scorer.evaluation.monitor.Monitor` composes the
pieces (join, metrics, detectors, alerts) and is driven record by record by ``evaluator.py``,
the tests and the benchmarks alike.
"""
