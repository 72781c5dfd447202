"""A hospital's Flower client with no deep-learning library: logistic regression in NumPy on
this hospital's UCI heart-disease rows. Written against ``flwr``, started with
``start_client(client=….to_client())`` when run as a script.

The math is medfed's ``logistic_regression`` plan's (standardized inputs, one linear layer,
mean binary cross-entropy on the logit, plain SGD at ``config["learning_rate"]``), with
minibatches in a NumPy permutation order. With ``batch_size`` at least the site's training rows
every step is one full batch, whose order does not matter: then a study of this client ends
where the same study of the installed plan ends (to float32 rounding). The data file is
``local.csv`` beside this script, or the path in ``HOSPITAL_CSV``.
"""

import csv
import math
import os
from pathlib import Path

import flwr as fl
import numpy as np

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


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def bce_with_logits(z, y):
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


class NumpyLogisticClient(fl.client.NumPyClient):
    def __init__(self):
        with DATA.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        x_train, self.y_train = load_split(rows, "train")
        x_test, self.y_test = load_split(rows, "test")
        mean = x_train.astype(np.float64).mean(axis=0)
        std = x_train.astype(np.float64).std(axis=0)
        std[std <= 1e-8 * (1.0 + np.abs(mean))] = 1.0
        self.x_train = ((x_train - mean) / std).astype(np.float32)
        self.x_test = ((x_test - mean) / std).astype(np.float32)
        self.weight = np.zeros((1, len(FEATURES)), np.float32)
        self.bias = np.zeros(1, np.float32)

    def get_parameters(self, config):
        return [self.weight.copy(), self.bias.copy()]

    def fit(self, parameters, config):
        w = np.asarray(parameters[0], np.float64)
        b = np.asarray(parameters[1], np.float64)
        n, batch = len(self.y_train), int(config["batch_size"])
        steps = int(config["local_steps"])
        total = steps if steps > 0 else int(config["local_epochs"]) * math.ceil(n / batch)
        lr = float(config["learning_rate"])
        rng = np.random.default_rng(int(config["seed"]))
        done = 0
        while done < total:
            order = rng.permutation(n)
            for start in range(0, n, batch):
                if done == total:
                    break
                index = order[start : start + batch]
                x, y = self.x_train[index].astype(np.float64), self.y_train[index]
                error = (sigmoid(x @ w.T + b).ravel() - y) / len(index)
                w = (w - lr * (error @ x)[None, :]).astype(np.float32).astype(np.float64)
                b = (b - lr * error.sum()).astype(np.float32).astype(np.float64)
                done += 1
        self.weight, self.bias = w.astype(np.float32), b.astype(np.float32)
        return self.get_parameters(config={}), n, {"steps": float(total)}

    def evaluate(self, parameters, config):
        w, b = parameters
        z = (self.x_test.astype(np.float64) @ np.asarray(w, np.float64).T).ravel() + b
        accuracy = float(((z > 0) == (self.y_test > 0.5)).mean())
        return bce_with_logits(z, self.y_test), len(self.y_test), {"accuracy": accuracy}


if __name__ == "__main__":
    fl.client.start_client(
        server_address="127.0.0.1:8080", client=NumpyLogisticClient().to_client()
    )
