"""``mlp``: a two-hidden-layer perceptron from [start latent, start age, target age] to the
target latent or the offset, on selected components (torch; imported only when used)."""

from __future__ import annotations

import numpy as np

from aging.devices import DeviceError, check_device_name, resolve_device
from aging.models.base import AgeModel, ModelError, Param, _short, check_array, check_indices, register
from aging.models.components import SELECTIONS, select_components
from aging.progress import progress_bar

ACTIVATIONS = ("tanh", "relu", "sigmoid")


def _build_net(n_in: int, hidden: int, n_out: int, activation: str):
    import torch.nn as nn

    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[activation]
    return nn.Sequential(
        nn.Linear(n_in, hidden), act(),  # [B, n_in] -> [B, hidden]
        nn.Linear(hidden, hidden), act(),  # -> [B, hidden]
        nn.Linear(hidden, n_out),  # -> [B, n_out]
    )


def _val_loss(net, xv, yv) -> float:
    """Mean squared error of ``net`` on the validation batch (no gradients)."""
    import torch

    net.eval()
    with torch.no_grad():
        return float(torch.mean((net(xv) - yv) ** 2))


@register
class MLPModel(AgeModel):
    """Two hidden layers, trained with Adam and early stopping on a validation split of the pairs.

    Inputs are the start latent's selected components (standardised) and the two ages
    (standardised); the output is the offset or the target latent on the same components
    (standardised); unselected components keep the start value. The study's best setting was
    6100 random pairs, ``hidden=1000``, ``activation="tanh"``, ``lr=0.01``.

    Parameters
    ----------
    hidden : int
        Units in each of the two hidden layers.
    activation : {"tanh", "relu", "sigmoid"}
    lr : float
        Adam learning rate.
    l1, l2 : float
        Penalties on the weights (not the biases).
    features : {"linear", "norm", "first", "all"}
        Component selection for inputs and outputs; ``dims`` components (``"all"``: every one).
    dims : int
    output : {"offset", "target"}
    epochs, batch_size, patience : training length, mini-batch size, early-stopping patience
        (epochs without improvement of the validation loss).
    val_fraction : float
        Fraction of the training pairs held out for early stopping.
    random_state : int
    device : {"cpu", "cuda", "auto"}
    """

    name = "mlp"
    _state_arrays = ("comps_", "x_mean_", "x_scale_", "y_mean_", "y_scale_", "ages_", "history_")
    _params = {
        "hidden": Param("int", low=1),
        "activation": Param("choice", choices=ACTIVATIONS),
        "lr": Param("float", low=0.0, low_open=True),
        "l1": Param("float", low=0.0),
        "l2": Param("float", low=0.0),
        "features": Param("choice", choices=SELECTIONS + ("all",)),
        "dims": Param("int", low=1, none=True),
        "output": Param("choice", choices=("offset", "target")),
        "epochs": Param("int", low=1),
        "batch_size": Param("int", low=1),
        "patience": Param("int", low=1),
        "val_fraction": Param("float", low=0.0, high=1.0, high_open=True),
        "random_state": Param("int", low=0),
    }

    def __init__(self, hidden=256, activation="tanh", lr=0.01, l1=0.0, l2=0.0, features="linear",
                 dims=512, output="offset", epochs=200, batch_size=128, patience=15,
                 val_fraction=0.1, random_state=0, device="cpu"):
        """Store the hyper-parameters as given (see the class docstring); ``fit`` validates them.

        Long: a scikit-learn estimator takes each hyper-parameter as a constructor argument, so
        that ``get_params``, ``make_model(name, **params)`` and saved models see them by name.
        """
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.l1 = l1
        self.l2 = l2
        self.features = features
        self.dims = dims
        self.output = output
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.device = device

    # -- helpers -------------------------------------------------------------------------------
    def _check_params(self):
        try:
            check_device_name(self.device)
        except DeviceError:
            raise ModelError(f"model mlp: parameter device must be one of cpu, cuda, cuda:N, auto, "
                             f"got {_short(self.device)}") from None

    def _inputs(self, lat_sel, a_s, a_t):
        """Standardised network inputs ``[B, n + 2]`` (numpy)."""
        x = (lat_sel - self.x_mean_) / self.x_scale_
        ages = (np.stack([a_s, a_t], axis=1) - self.ages_[0]) / self.ages_[1]
        return np.concatenate([x, ages], axis=1).astype(np.float32)

    def _torch_device(self):
        import torch

        try:
            return torch.device(resolve_device(self.device, "model mlp: parameter device"))
        except DeviceError as exc:
            raise ModelError(f"{exc} (use device=cpu or device=auto)") from None

    def _standardise(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """Select the components and learn the input and output scalings from the training pairs.
        Returns the selected latents of every photo ``[N, n]`` and the raw outputs ``[P, n]``."""
        ds = pairs.dataset
        try:
            comps = select_components(pairs, None if self.features == "all" else self.features,
                                      None if self.features == "all" else self.dims)
        except ValueError as exc:
            raise ModelError(f"model mlp: {exc}") from None
        self.comps_ = comps.astype(np.int64)
        lat = ds.latents_flat[:, comps].astype(np.float64)  # [N, n]
        seen = pairs.photos
        self.x_mean_ = lat[seen].mean(0).astype(np.float32)
        self.x_scale_ = np.maximum(lat[seen].std(0), 1e-6).astype(np.float32)
        ages = ds.ages.astype(np.float64)
        self.ages_ = np.array([ages[seen].mean(), max(ages[seen].std(), 1.0)])
        y_all = lat[pairs.target] - lat[pairs.start] if self.output == "offset" else lat[pairs.target]
        self.y_mean_ = y_all.mean(0).astype(np.float32)
        self.y_scale_ = np.maximum(y_all.std(0), 1e-6).astype(np.float32)
        return lat, y_all

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, pairs, *, progress=False):
        import torch

        self._begin_fit(pairs)
        dev = self._torch_device()
        lat, y_all = self._standardise(pairs)
        lat32, ages = lat.astype(np.float32), pairs.dataset.ages.astype(np.float64)

        def batch(idx):
            s, t = pairs.start[idx], pairs.target[idx]
            x = self._inputs(lat32[s], ages[s], ages[t])
            y = ((y_all[idx] - self.y_mean_) / self.y_scale_).astype(np.float32)
            return torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)

        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(pairs))
        n_val = int(round(float(self.val_fraction) * len(pairs))) if len(pairs) >= 10 else 0
        n = len(self.comps_)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            net = _build_net(n + 2, int(self.hidden), n, self.activation).to(dev)
        history = self._train(net, batch, order[n_val:], batch(order[:n_val]) if n_val else None, rng, progress)
        self.history_ = np.asarray(history, dtype=np.float64)  # [epochs, 2] train / val loss
        self._net = net.cpu().eval()
        return self

    def _train(self, net, batch, tr_idx, val, rng, progress: bool) -> list[tuple[float, float]]:
        """Adam with early stopping on the validation batch ``val`` (``None``: on the training
        loss); ``net`` ends with its best weights. Returns the ``(train, val)`` loss per epoch."""
        import torch

        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        best, best_state, since, history = np.inf, None, 0, []
        bar = progress_bar(range(int(self.epochs)), desc="mlp", quiet=not progress)
        for _epoch in bar:
            train_loss = self._epoch(net, opt, batch, rng.permutation(tr_idx))
            val_loss = _val_loss(net, *val) if val is not None else train_loss
            history.append((train_loss, val_loss))
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if val_loss < best - 1e-6:
                best, since = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                since += 1
                if since >= int(self.patience):
                    break
        bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        return history

    def _epoch(self, net, opt, batch, perm) -> float:
        """One pass over the training pairs ``perm`` in mini-batches; the mean training loss."""
        import torch

        net.train()
        weights = [m.weight for m in net if isinstance(m, torch.nn.Linear)]
        total, size = 0.0, int(self.batch_size)
        for i in range(0, len(perm), size):
            xb, yb = batch(perm[i:i + size])
            loss = torch.mean((net(xb) - yb) ** 2)
            penalty = 0.0
            if self.l2:
                penalty = penalty + float(self.l2) * sum((w**2).sum() for w in weights)
            if self.l1:
                penalty = penalty + float(self.l1) * sum(w.abs().sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            (loss + penalty).backward()
            opt.step()
            total += loss.item() * len(xb)
        return total / max(len(perm), 1)

    # -- predict / persistence -----------------------------------------------------------------
    def _predict_flat(self, start, start_age, target_ages):
        import torch

        sel = start[self.comps_][None, :].repeat(len(target_ages), axis=0)
        x = self._inputs(sel, np.full(len(target_ages), start_age), target_ages)
        with torch.no_grad():
            y = self._net(torch.from_numpy(x)).numpy()
        y = y * self.y_scale_ + self.y_mean_  # [T, n]
        out = np.repeat(start[None, :], len(target_ages), axis=0)
        if self.output == "offset":
            out[:, self.comps_] += y
        else:
            out[:, self.comps_] = y
        return out

    def _get_state(self):
        state = super()._get_state()
        for k, v in self._net.state_dict().items():
            state[f"net.{k}"] = v.numpy()
        return state

    def _set_state(self, arrays):
        import torch

        super()._set_state(arrays)
        n = int(np.asarray(self.comps_).size)
        net = _build_net(n + 2, int(self.hidden), n, self.activation)
        weights = {k[4:]: v for k, v in arrays.items() if k.startswith("net.")}
        for key, param in net.state_dict().items():
            if key not in weights:
                raise ValueError(f"missing network weights net.{key}")
            if tuple(weights[key].shape) != tuple(param.shape):
                raise ValueError(f"network weights net.{key} have shape {tuple(weights[key].shape)}, "
                                 f"expected {tuple(param.shape)}")
            if not np.all(np.isfinite(weights[key])):
                raise ValueError(f"network weights net.{key} contain NaN or inf")
        extra = sorted(set(weights) - set(net.state_dict()))
        if extra:
            raise ValueError(f"unexpected network weights net.{extra[0]}")
        net.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})
        self._net = net.eval()

    def _check_state(self):
        dim = int(np.prod(self.latent_shape_))
        n = int(np.asarray(self.comps_).size)
        for key, shape in (("x_mean_", (n,)), ("x_scale_", (n,)), ("y_mean_", (n,)), ("y_scale_", (n,)),
                           ("ages_", (2,))):
            problem = check_array(self, key, shape)
            if problem:
                return problem
        return check_array(self, "history_", (None, 2), finite=False) or check_indices(self, "comps_", dim)
