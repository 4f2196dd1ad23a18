import math
import re

import numpy as np
import pytest

from backprop.errors import ConfigError, TrainingDiverged
from backprop.nn.network import MLP
from backprop.nn.optimizers import OPTIMIZERS, optim_config, scheduled_lr
from backprop.nn.training import TrainConfig, train

SGD = optim_config(name="sgd", lr=0.1)

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([0, 1, 1, 0])


def blobs(n=300, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    return centres[y] + rng.normal(0, 1, (n, d)), y


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_loss_falls_with_every_optimizer(optimizer):
    X, y = blobs()
    net = MLP([5, 16, 3], rng=np.random.default_rng(0))
    lr = 0.01 if optimizer in ("adam", "rmsprop") else 0.1
    config = TrainConfig(epochs=15, batch_size=32)
    history = train(
        net, X, y, config, optim_config(name=optimizer, lr=lr), np.random.default_rng(1)
    )
    losses = [m.train_loss for m in history.epochs]
    assert len(losses) == 15
    assert losses[-1] < 0.5 * losses[0]
    assert (net.predict(X) == y).mean() > 0.9


@pytest.mark.parametrize(
    "activation,output,loss",
    [("sigmoid", "softmax", "cross_entropy"), ("tanh", "sigmoid", "squared_error")],
)
def test_xor_is_learnt(activation, output, loss):
    net = MLP([2, 8, 2], activation, output, loss, dtype="float64", rng=np.random.default_rng(2))
    config = TrainConfig(epochs=2000, batch_size=4)
    y = XOR_Y if loss == "cross_entropy" else np.eye(2)[XOR_Y]
    train(net, XOR_X, y, config, optim_config(name="momentum", lr=0.5), np.random.default_rng(3))
    assert net.predict(XOR_X).tolist() == XOR_Y.tolist()


def test_stronger_l2_gives_smaller_weights():
    X, y = blobs()
    norms = []
    for weight_decay in (0.0, 1e-3, 1e-2):
        net = MLP([5, 16, 3], rng=np.random.default_rng(0))
        optim = optim_config(lr=0.1, weight_decay=weight_decay)
        train(net, X, y, TrainConfig(epochs=20, batch_size=32), optim, np.random.default_rng(1))
        norms.append(sum(float((w**2).sum()) for w in net.weights))
    assert norms[0] > norms[1] > norms[2]


def test_divergence_names_epoch_batch_and_learning_rate():
    X, y = blobs()
    net = MLP([5, 16, 3], "relu", rng=np.random.default_rng(0))
    config = TrainConfig(epochs=5, batch_size=50)
    with pytest.raises(TrainingDiverged) as err:
        train(net, X, y, config, optim_config(lr=1e30), np.random.default_rng(1))
    message = str(err.value)
    assert "epoch 1, batch 2" in message or "epoch 1, batch 1" in message
    assert "learning rate 1e+30" in message
    assert "try a smaller one, such as optim.lr=1, the default of sgd" in message


@pytest.mark.parametrize("optimizer, default", [("sgd", "1"), ("adam", "0.001")])
def test_a_finite_loss_far_above_guessing_is_divergence_too(optimizer, default):
    """lr=1e9 keeps every number finite on sigmoid units, yet the loss is 1e10: not a model."""
    X, y = blobs()
    net = MLP([5, 16, 3], rng=np.random.default_rng(0))
    config = TrainConfig(epochs=5, batch_size=50)
    seen = []
    with pytest.raises(TrainingDiverged) as err:
        train(net, X, y, config, optim_config(name=optimizer, lr=1e9), np.random.default_rng(1),
              callback=seen.append)  # fmt: skip
    message = str(err.value)
    assert re.search(r"the training loss rose to [\d.e+]+ in epoch 1, over 10 times that of "
                     r"guessing \(1\.1\)", message), message  # fmt: skip
    assert f"such as optim.lr={default}, the default of {optimizer}" in message
    assert seen == []  # the diverged epoch is not reported as one


def test_a_small_learning_rate_is_told_to_go_smaller_still():
    X, y = blobs()
    net = MLP([5, 16, 3], "relu", rng=np.random.default_rng(0))
    with pytest.raises(TrainingDiverged, match=r"such as optim.lr=0\.05$"):
        train(net, X * 10, y, TrainConfig(epochs=5, batch_size=30), optim_config(lr=0.5),
              np.random.default_rng(1))  # fmt: skip


def test_early_stopping_restores_the_best_weights():
    X, y = blobs(n=200, seed=1)
    Xv, yv = blobs(n=100, seed=2)  # other centres: validation loss soon rises
    net = MLP([5, 32, 3], rng=np.random.default_rng(0))
    config = TrainConfig(epochs=200, batch_size=20, patience=3)
    seen = []
    history = train(net, X, y, config, optim_config(lr=0.5), np.random.default_rng(1), Xv, yv,
                    callback=seen.append)  # fmt: skip
    assert history.stopped_early
    assert len(history.epochs) < 200
    assert seen == history.epochs
    val_losses = [m.val_loss for m in history.epochs]
    best = int(np.argmin(val_losses))
    assert history.best_epoch == best + 1
    assert len(val_losses) == best + 1 + 3  # stopped after `patience` epochs without gain
    val_loss, _ = net.evaluate(Xv, np.eye(3, dtype=np.float32)[yv])
    assert val_loss == pytest.approx(val_losses[best], rel=1e-6)


def test_callback_receives_each_epochs_metrics():
    X, y = blobs()
    Xv, yv = blobs(n=60, seed=0)
    seen = []
    net = MLP([5, 8, 3], rng=np.random.default_rng(0))
    train(net, X, y, TrainConfig(epochs=3), SGD, np.random.default_rng(0), Xv, yv, seen.append)
    assert [m.epoch for m in seen] == [1, 2, 3]
    for m in seen:
        assert set(m.as_dict()) >= {"epoch", "train_loss", "val_loss", "val_accuracy"}
        assert 0 <= m.val_accuracy <= 1 and math.isfinite(m.val_loss)


def test_same_seed_same_weights_other_seed_other_weights():
    X, y = blobs()

    def weights(seed):
        rng = np.random.default_rng(seed)
        net = MLP([5, 8, 3], rng=rng)
        train(net, X, y, TrainConfig(epochs=3, batch_size=16), SGD, rng)
        return net.parameters()

    a, b, c = weights(7), weights(7), weights(8)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


def test_float64_on_request():
    X, y = blobs()
    net = MLP([5, 8, 3], dtype="float64", rng=np.random.default_rng(0))
    train(net, X, y, TrainConfig(epochs=2), SGD, np.random.default_rng(0))
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert all(p.dtype == np.float32 for p in MLP([5, 8, 3]).parameters())


def test_batch_larger_than_the_data_is_clipped_with_a_warning():
    net = MLP([2, 4, 2], rng=np.random.default_rng(0))
    with pytest.warns(UserWarning, match="batch_size 64 is larger than the 4 training rows"):
        train(net, XOR_X, XOR_Y, TrainConfig(epochs=1, batch_size=64), SGD,
              np.random.default_rng(0))  # fmt: skip


@pytest.mark.parametrize(
    "make, field, value, message",
    [
        (TrainConfig, "epochs", 0, "epochs must be an integer >= 1, got 0"),
        (TrainConfig, "batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        (TrainConfig, "patience", 0, "patience must be an integer >= 1 or null, got 0"),
        (TrainConfig, "epochs", 2.5, "epochs must be an integer >= 1, got 2.5"),
        (TrainConfig, "resume", "yes", "resume must be true or false, got 'yes'"),
        (optim_config, "lr", -1.0, "lr must be a number > 0, got -1.0"),
        (optim_config, "lr", True, "lr must be a number > 0, got True"),
        (optim_config, "lr", float("inf"), "lr must be a number > 0, got inf"),
        (optim_config, "name", "lbfgs", f"name must be one of {', '.join(OPTIMIZERS)}, got"),
        (optim_config, "schedule", "warm", "schedule must be one of constant, step,"),
        (optim_config, "weight_decay", -0.1, "weight_decay must be a number >= 0, got -0.1"),
    ],
)
def test_bad_training_settings_are_refused_with_key_rule_and_value(make, field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        make(**{field: value})
    assert err.value.key == field


def test_each_optimizer_owns_its_options():
    with pytest.raises(
        ConfigError, match="unknown key momentum; the keys of the settings are name"
    ):
        optim_config(name="adam", momentum=0.9)
    with pytest.raises(
        ConfigError, match=re.escape("momentum must be a number in [0, 1), got 1.0")
    ):
        optim_config(name="momentum", momentum=1.0)
    assert optim_config(name="adam").beta2 == 0.999


def test_learning_rate_schedules():
    def lr(schedule, epoch, epochs, **options):
        return scheduled_lr(optim_config(lr=0.1, schedule=schedule, **options), epoch, epochs)

    assert lr("constant", 7, 10) == 0.1
    assert lr("step", 11, 30, gamma=0.5, step_size=10) == pytest.approx(0.05)
    assert lr("exponential", 3, 10, gamma=0.5) == pytest.approx(0.025)
    assert lr("cosine", 1, 11) == pytest.approx(0.1)
    assert lr("cosine", 6, 11) == pytest.approx(0.05)
    assert lr("cosine", 11, 11, min_lr=0.01) == pytest.approx(0.01)


def test_schedule_is_applied_per_epoch():
    X, y = blobs()
    net = MLP([5, 8, 3], rng=np.random.default_rng(0))
    optim = optim_config(schedule="exponential", gamma=0.5, lr=0.2)
    history = train(net, X, y, TrainConfig(epochs=4), optim, np.random.default_rng(0))
    assert [m.learning_rate for m in history.epochs] == pytest.approx([0.2, 0.1, 0.05, 0.025])


def test_unknown_activation_and_pair_list_the_known_ones():
    with pytest.raises(ConfigError, match="unknown activation 'swish'; choose one of: "):
        MLP([2, 2], activation="swish")
    with pytest.raises(ConfigError, match="softmax \\+ cross_entropy, sigmoid \\+ squared_error"):
        MLP([2, 2], output="softmax", loss="squared_error")


def _frozen(state):
    """A copy of a TrainingState that later epochs cannot change."""
    import copy

    return copy.deepcopy(state)


@pytest.mark.parametrize(
    "optimizer, patience, stop_at",
    [("sgd", None, 4), ("momentum", None, 7), ("adam", 3, 5), ("sgd", 2, 1)],
)
def test_resuming_from_a_checkpoint_ends_with_the_same_weights(optimizer, patience, stop_at):
    from backprop.nn.training import TrainingState  # noqa: PLC0415

    X, y = blobs()
    Xv, yv = blobs(100, seed=1)
    lr = 0.01 if optimizer == "adam" else 0.3
    config = TrainConfig(epochs=12, batch_size=32, patience=patience)
    optim = optim_config(name=optimizer, lr=lr, schedule="cosine")

    def run(checkpoint=None, resume=None):
        net = MLP([5, 16, 3], rng=np.random.default_rng(0))
        history = train(net, X, y, config, optim, np.random.default_rng(1), Xv, yv,
                        checkpoint=checkpoint, resume=resume)  # fmt: skip
        return net, history

    saved: list[TrainingState] = []
    whole, whole_history = run(checkpoint=lambda s: saved.append(_frozen(s)))
    assert [s.epoch for s in saved] == [m.epoch for m in whole_history.epochs]
    resumed, history = run(resume=saved[stop_at - 1])
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert np.array_equal(a, b)
    assert [m.train_loss for m in history.epochs] == [m.train_loss for m in whole_history.epochs]
    assert history.best_epoch == whole_history.best_epoch
    assert history.stopped_early == whole_history.stopped_early
