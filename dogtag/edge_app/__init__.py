"""The edge app: tag shelter photos with dog breeds, offline, with no TensorFlow.

    from dogtag.edge_app import Classifier
    prediction = Classifier().predict("rex.jpg")    # a photo's path, an HxWx3 uint8 array or a PIL image

Stages of a run: `walk` finds photos, `images` decodes and resizes them, `runtime` runs the model
file (LiteRT or onnxruntime), `classifier` turns outputs into predictions (named by `breeds`:
display names, breed ids, merges, siblings, aliases), `results` / `xmp` write
them, `tagging` ties these together and `cli` is the `dogtag tag` / `dogtag predict` commands;
`options` declares the options those commands, `watch` and `review` share (`TagOptions`).
`thresholds` tunes a model's min_confidence and min_dog (NumPy only: training and `dogtag learn` use
it), `classifier.statuses` is the one rule that applies them, `locks` keeps two writers apart.
"""

from dogtag.edge_app.classifier import Classifier, Prediction, default_model_path
from dogtag.edge_app.images import PhotoError, load_photo, prepare_image
from dogtag.edge_app.model_file import ModelFileError, ModelInfo, read_model_info
from dogtag.edge_app.options import TagOptions
from dogtag.edge_app.tagging import Summary, TaggingError, tag_folders

__all__ = [
    "Classifier",
    "ModelFileError",
    "ModelInfo",
    "PhotoError",
    "Prediction",
    "Summary",
    "TagOptions",
    "TaggingError",
    "default_model_path",
    "load_photo",
    "prepare_image",
    "read_model_info",
    "tag_folders",
]
