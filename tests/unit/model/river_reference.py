"""River's own pipeline with a model's settings: the reference the fast paths are held equal to."""

from __future__ import annotations

from river import compose, linear_model, optim, preprocessing

from stream_scorer.model.settings import ModelSettings


def river_pipeline(s: ModelSettings) -> compose.Pipeline:
    """StandardScaler then LogisticRegression by SGD, configured as :class:`OnlineLogit` is."""
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(
            optim.SGD(s.learning_rate),
            l2=s.l2,
            intercept_lr=s.intercept_lr,
            intercept_init=s.intercept_init,
        ),
    )
