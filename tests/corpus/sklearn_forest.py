"""Fit a random forest and a linear SGD model; no random_state anywhere, as many notebooks do."""

import argparse
import json
import os

import joblib
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-estimators", type=int, default=25)
    p.add_argument("--max-depth", type=int, default=6)
    p.add_argument("--model-dir", default="models")
    args = p.parse_args()

    X, y = make_classification(n_samples=400, n_features=12, n_informative=6)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25)

    forest = RandomForestClassifier(n_estimators=args.n_estimators, max_depth=args.max_depth)
    forest.fit(X_train, y_train)
    sgd = make_pipeline(StandardScaler(), SGDClassifier(max_iter=50, tol=None))
    sgd.fit(X_train, y_train)

    metrics = {}
    for name, model in [("forest", forest), ("sgd", sgd)]:
        pred = model.predict(X_test)
        metrics[name] = {"accuracy": accuracy_score(y_test, pred),
                         "f1": f1_score(y_test, pred)}
        print(f"{name}: accuracy={metrics[name]['accuracy']:.4f}")
    os.makedirs(args.model_dir, exist_ok=True)
    joblib.dump(forest, os.path.join(args.model_dir, "forest.joblib"))
    joblib.dump(sgd, os.path.join(args.model_dir, "sgd.joblib"))
    with open("metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)


if __name__ == "__main__":
    main()
