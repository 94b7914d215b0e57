"""Train the MLP in PyTorch: deterministic on CPU, early stopping on validation ROC AUC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from export.config import TrainConfig
from export.data import Dataset
from preprocess_ensemble.features import FeatureContract, Standardizer

AMOUNT_KINDS = ("amount", "signed_amount")


class CreditMLP(nn.Module):
    """Standardized features [batch, 23] -> probability of default [batch, 1]."""

    def __init__(self, n_features: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probability, so the exported graph's output is ready to serve."""
        return torch.sigmoid(self.net(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores, for a numerically stable loss."""
        return self.net(x)


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
    """The trained network, its scaler and the training history."""

    model: AveragedMLP
    standardizer: Standardizer
    members: list[dict]  # per member: seed, best epoch, best validation AUC, history
    validation_auc: float


def feature_transforms(contract: FeatureContract, config: TrainConfig) -> tuple[str, ...]:
    """Per-feature transform: ``config.amount_transform`` on amounts, identity elsewhere.

    Features in ``config.exclude_from_model`` get ``drop``: the model sees a constant 0.
    """
    unknown = set(config.exclude_from_model) - set(contract.names)
    if unknown:
        raise ValueError(f"exclude_from_model names unknown features {sorted(unknown)}")
    return tuple(
        "drop"
        if name in config.exclude_from_model
        else config.amount_transform
        if kind in AMOUNT_KINDS
        else "identity"
        for name, kind in zip(contract.names, contract.kinds, strict=True)
    )


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Probabilities [n] for standardized float32 rows, in eval mode."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()[:, 0]


def train(
    train: Dataset, validation: Dataset, contract: FeatureContract, config: TrainConfig
) -> TrainResult:
    """Fit the scaler on training rows, then ``config.ensemble_size`` MLPs; average them."""
    torch.set_num_threads(config.torch_threads)
    torch.use_deterministic_algorithms(True)
    standardizer = Standardizer.fit(
        train.features, contract.names, feature_transforms(contract, config)
    )
    x_train = torch.from_numpy(standardizer.transform(train.features))
    y_train = torch.from_numpy(train.target.astype(np.float32))[:, None]
    x_val = standardizer.transform(validation.features)
    members, reports = [], []
    for index in range(config.ensemble_size):
        seed = config.seed + index
        member, report = _train_member(x_train, y_train, x_val, validation.target, config, seed)
        members.append(member)
        reports.append(report)
    model = AveragedMLP(members).eval()
    auc = float(roc_auc_score(validation.target, predict(model, x_val)))
    return TrainResult(model, standardizer, reports, auc)


def _train_member(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    seed: int,
) -> tuple[CreditMLP, dict]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = CreditMLP(x_train.shape[1], config.hidden, config.dropout)
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
