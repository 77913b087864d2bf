"""Dogtag: an offline dog-breed tagger for animal shelter photo folders.

    from dogtag import Classifier
    prediction = Classifier().predict("rex.jpg")    # a photo's path, an HxWx3 uint8 array or a PIL image

The stages are sub-packages: `dogtag.edge_app` (tagging, no TensorFlow), `dogtag.review` (the review
page), `dogtag.train`, `dogtag.export`, `dogtag.benchmarks`, and `dogtag.models` (the bundled models).
"""

__version__ = "0.1.0"

# The public Python call, imported on first use so that `dogtag --help` stays quick.
_PUBLIC = {"Classifier", "Prediction", "PhotoError", "ModelFileError", "TagOptions", "tag_folders"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import dogtag.edge_app

        return getattr(dogtag.edge_app, name)
    raise AttributeError(f"module 'dogtag' has no attribute {name!r}")
