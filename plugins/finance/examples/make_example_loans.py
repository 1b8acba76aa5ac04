"""Writes example_loans.csv: 400 synthetic loan applications with a known rule (seeded, rerunnable).

    logit = -1.2 + 0.05 (debt_ratio - 30) - 0.8 ln(income / 3000) + 0.5 ln(loan_amount / 8000)
            - 0.06 years_employed + home effect + purpose effect
    defaulted = "yes" with probability sigmoid(logit), else "no"

Row L0007 has a negative loan amount (rejected by the config's rule) and row L0011 has no income
(imputed and flagged), so training on the file shows both behaviours.

Run: python plugins/finance/examples/make_example_loans.py
"""

from pathlib import Path

import numpy as np
import polars as pl

rng = np.random.default_rng(7)
n = 400
income = np.round(np.exp(rng.normal(np.log(3000), 0.45, n)), -1)
debt_ratio = np.round(rng.beta(2, 5, n) * 100, 1)
loan_amount = np.round(np.exp(rng.normal(np.log(8000), 0.6, n)), -2)
age = rng.integers(21, 71, n)
years_employed = np.round(np.minimum(rng.exponential(5, n), age - 18), 1)
home = rng.choice(["rent", "own", "mortgage", "other"], n, p=[0.4, 0.2, 0.35, 0.05])
purpose = rng.choice(["car", "home_improvement", "education", "debt_consolidation", "other"], n)
home_effect = {"rent": 0.3, "own": -0.4, "mortgage": -0.1, "other": 0.5}
purpose_effect = {"car": -0.2, "home_improvement": -0.1, "education": 0.2, "debt_consolidation": 0.4, "other": 0.0}
logit = (-1.2 + 0.05 * (debt_ratio - 30) - 0.8 * np.log(income / 3000) + 0.5 * np.log(loan_amount / 8000)
         - 0.06 * years_employed + np.vectorize(home_effect.get)(home) + np.vectorize(purpose_effect.get)(purpose))
defaulted = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
frame = pl.DataFrame({
    "loan_id": [f"L{i:04d}" for i in range(1, n + 1)], "income": income, "debt_ratio": debt_ratio,
    "loan_amount": loan_amount, "age": age, "years_employed": years_employed, "home": home,
    "purpose": purpose, "defaulted": defaulted,
})
frame = frame.with_columns(
    pl.when(pl.col("loan_id") == "L0007").then(-500.0).otherwise(pl.col("loan_amount")).alias("loan_amount"),
    pl.when(pl.col("loan_id") == "L0011").then(None).otherwise(pl.col("income")).alias("income"),
)
frame.write_csv(Path(__file__).with_name("example_loans.csv"))
print(frame.height, "rows,", int((defaulted == "yes").sum()), "defaults")
