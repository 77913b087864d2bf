"""The export stage: trained Keras model -> TFLite and ONNX files carrying their labels, verified.

formats.py   the format names (and ONNX calibration methods)
convert.py   how each format is produced (uint8 pixels in, probabilities out)
metadata.py  the Dogtag model info embedded in each file
images.py    how calibration and verification photos are read and resized
verify.py    every exported file against the Keras model, on real test photos
model_card.py  MODEL_CARD.md from the verification and the training run's metrics
cli.py       `dogtag export`
"""
