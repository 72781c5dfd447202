"""A hospital's Flower client, as the specification shows it: a PyTorch logistic regression on
this hospital's UCI heart-disease rows, written against ``flwr`` and nothing of medfed.

    medfed node plan approve-client heart_torch_client.py --config node.toml
    medfed flower run heart_torch_client.py --config node.toml     # drop-in: runs the script
    # or, as a client plan of `medfed node start`: plan = { kind = "client", name = … }

The local math is medfed's ``logistic_regression`` plan's (training/plans/_torch.py): inputs
standardized with the training split's mean and population std, ``nn.Linear(13, 1)`` with
binary cross-entropy on the logit, plain SGD, minibatches in ``torch.randperm`` order drawn from
a generator seeded with ``config["seed"]``, reshuffled each pass. So a study of this client
ends where the same study of the installed plan ends. The data file is ``local.csv`` beside
this script (features, ``target``, ``split``), or the path in ``HOSPITAL_CSV``.
"""

import csv
import math
import os
from pathlib import Path

import flwr as fl
import numpy as np
import torch
from torch import nn

FEATURES = [
    "age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak",
    "cp_2", "cp_3", "cp_4", "restecg_1", "restecg_2",
]  # fmt: skip
DATA = Path(os.environ.get("HOSPITAL_CSV", Path(__file__).with_name("local.csv")))


def load_split(rows, split):
    chosen = [row for row in rows if row["split"] == split]
    x = np.array([[float(row[f]) for f in FEATURES] for row in chosen], dtype=np.float32)
    y = np.array([float(row["target"]) for row in chosen], dtype=np.float32)
    return x, y


def standardize(x, mean, std):
    return torch.from_numpy(((x.astype(np.float64) - mean) / std).astype(np.float32))


class HospitalClient(fl.client.NumPyClient):
    def __init__(self):
        with DATA.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        x_train, self.y_train = load_split(rows, "train")
        x_test, self.y_test = load_split(rows, "test")
        mean = x_train.astype(np.float64).mean(axis=0)
        std = x_train.astype(np.float64).std(axis=0)
        std[std <= 1e-8 * (1.0 + np.abs(mean))] = 1.0  # a constant column is centred only
        self.x_train = standardize(x_train, mean, std)
        self.x_test = standardize(x_test, mean, std)
        self.model = nn.Linear(len(FEATURES), 1)

    def get_parameters(self, config):
        return [p.detach().numpy().copy() for p in self.model.state_dict().values()]

    def set_parameters(self, parameters):
        keys = list(self.model.state_dict())
        state = {
            k: torch.from_numpy(np.array(p, copy=True))
            for k, p in zip(keys, parameters, strict=True)
        }
        self.model.load_state_dict(state, strict=True)

    def fit(self, parameters, config):
        self.set_parameters(parameters)
        anchor = [p.detach().clone() for p in self.model.parameters()]
        y = torch.from_numpy(self.y_train)
        n, batch = len(y), int(config["batch_size"])
        steps = int(config["local_steps"])
        total = steps if steps > 0 else int(config["local_epochs"]) * math.ceil(n / batch)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=float(config["learning_rate"]))
        loss_fn = nn.BCEWithLogitsLoss()
        mu = float(config.get("proximal_mu", 0.0))
        generator = torch.Generator().manual_seed(int(config["seed"]))
        done = 0
        while done < total:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch):
                if done == total:
                    break
                index = order[start : start + batch]
                optimizer.zero_grad()
                loss = loss_fn(self.model(self.x_train[index]).squeeze(-1), y[index])
                if mu > 0:  # FedProx (Li et al. 2020): the proximal term is the client's to add
                    distance = sum(
                        (p - a).pow(2).sum()
                        for p, a in zip(self.model.parameters(), anchor, strict=True)
                    )
                    loss = loss + 0.5 * mu * distance
                loss.backward()
                optimizer.step()
                done += 1
        return self.get_parameters(config={}), n, {"steps": float(total)}

    def evaluate(self, parameters, config):
        self.set_parameters(parameters)
        with torch.no_grad():
            logits = self.model(self.x_test).squeeze(-1)
            loss = nn.BCEWithLogitsLoss()(logits, torch.from_numpy(self.y_test))
        accuracy = float(((logits > 0).float().numpy() == self.y_test).mean())
        return float(loss), len(self.y_test), {"accuracy": accuracy}


fl.client.start_numpy_client(server_address="127.0.0.1:8080", client=HospitalClient())
