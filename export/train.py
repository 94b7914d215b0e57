"""Train the MLP in PyTorch: deterministic on CPU, early stopping on validation ROC AUC.

Monotone where credit logic demands it: the first layer's weights on the encoded payment delays
(``Encoding.monotone_columns``) and every later layer's weights are kept >= 0 (projected after
each step). ReLU and sigmoid are non-decreasing, so the probability can never fall when a delay
grows, everything else equal; static INT8 keeps the signs and the rounding is monotone, so the
served file keeps the property (checked on every holdout row and a grid by the gate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from export.config import TrainConfig
from export.data import Dataset
from export.encoding import Encoding, encode


def _mlp(width: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class CreditMLP(nn.Module):
    """Encoded features [batch, width] -> probability of default [batch, 1].

    Without ``monotone_columns`` a plain MLP. With them, the logit is the sum of two towers: a
    free MLP over every other column, and a constrained MLP over all columns whose weights on
    the monotone columns and whose later weights are kept >= 0 (:meth:`project_`). The free
    tower never sees the monotone columns and the constrained one is non-decreasing in them,
    so the sum is too; the free tower keeps the rest of the function unconstrained.
    """

    def __init__(
        self,
        n_features: int,
        hidden: tuple[int, ...],
        dropout: float,
        monotone_columns: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.monotone_columns = tuple(monotone_columns)
        if not self.monotone_columns:
            self.net = _mlp(n_features, hidden, dropout)
            return
        free = [k for k in range(n_features) if k not in self.monotone_columns]
        self.register_buffer("free_columns", torch.tensor(free, dtype=torch.long))
        self.free = _mlp(len(free), hidden, dropout)
        self.constrained = _mlp(n_features, hidden, dropout)
        with torch.no_grad():
            for layer in self._constrained_linears()[1:]:
                layer.weight.abs_()  # start inside the constraint, not on its boundary
        self.project_()

    def _constrained_linears(self) -> list[nn.Linear]:
        return [m for m in self.constrained if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the constrained weights to >= 0 (a no-op for a plain MLP)."""
        if not self.monotone_columns:
            return
        first, *later = self._constrained_linears()
        columns = list(self.monotone_columns)
        first.weight[:, columns] = first.weight[:, columns].clamp(min=0)
        for layer in later:
            layer.weight.clamp_(min=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probability, so the exported graph's output is ready to serve."""
        return torch.sigmoid(self.logits(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores, for a numerically stable loss."""
        if not self.monotone_columns:
            return self.net(x)
        return self.free(x.index_select(1, self.free_columns)) + self.constrained(x)


class AveragedMLP(nn.Module):
    """Mean probability of several MLPs trained from different seeds (a bagged ensemble)."""

    def __init__(self, members: list[CreditMLP]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average of the members' probabilities, [batch, 1]."""
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


@dataclass
class TrainResult:
    """The trained network, its input encoding and the training history."""

    model: AveragedMLP
    encoding: Encoding
    members: list[dict]  # per member: seed, best epoch, best validation AUC, history
    validation_auc: float


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Probabilities [n] for encoded float32 rows, in eval mode."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()[:, 0]


def train(
    train: Dataset, validation: Dataset, encoding: Encoding, config: TrainConfig
) -> TrainResult:
    """Train ``config.ensemble_size`` MLPs on the encoded rows and average them."""
    torch.set_num_threads(config.torch_threads)
    torch.use_deterministic_algorithms(True)
    x_train = torch.from_numpy(encode(encoding, train.features))
    y_train = torch.from_numpy(train.target.astype(np.float32))[:, None]
    x_val = encode(encoding, validation.features)
    monotone = tuple(encoding.monotone_columns) if config.monotone_delays else ()
    members, reports = [], []
    for index in range(config.ensemble_size):
        seed = config.seed + index
        member, report = _train_member(
            x_train, y_train, x_val, validation.target, config, seed, monotone
        )
        members.append(member)
        reports.append(report)
    model = AveragedMLP(members).eval()
    auc = float(roc_auc_score(validation.target, predict(model, x_val)))
    return TrainResult(model, encoding, reports, auc)


def _train_member(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    seed: int,
    monotone_columns: tuple[int, ...],
) -> tuple[CreditMLP, dict]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = CreditMLP(x_train.shape[1], config.hidden, config.dropout, monotone_columns)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([config.positive_weight]))
    best_auc, best_epoch, best_state, history = -1.0, -1, None, []
    progress = tqdm(range(config.max_epochs), desc=f"member seed={seed}", unit="epoch")
    for epoch in progress:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model.logits(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            model.project_()
            total += loss.item() * len(batch)
        auc = float(roc_auc_score(y_val, predict(model, x_val)))
        history.append({"epoch": epoch, "train_loss": total / len(order), "validation_auc": auc})
        progress.set_postfix(loss=f"{total / len(order):.4f}", val_auc=f"{auc:.4f}")
        if auc > best_auc:
            best_auc, best_epoch = auc, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    progress.close()
    model.load_state_dict(best_state)
    model.eval()
    report = {"seed": seed, "best_epoch": best_epoch, "validation_auc": best_auc}
    return model, {**report, "history": history}
