"""The learn stage: `dogtag learn` fits a new head on the volunteers' corrections, on a laptop or a Pi.

No TensorFlow, no torch: numpy and the edge app. One file per idea:

- examples.py  what to learn from: reviews files (edge_app.reviews) and --labeled folders; label names
- bank.py      training-photo embeddings shipped with the bundled models (keeps the 120 breeds)
- fit.py       the head fitted in numpy, and the k-fold check old vs new (public: fit, kfold, predict)
- run.py       the whole run: learn(folders, labeled, out, ...) -> LearnReport
- card.py      the learned model's card and the printed report
- cli.py       the command

The learned model folder, its loading and the embedding cache live in the edge app
(edge_app.learned, edge_app.embeddings), since tagging runs them.
"""
