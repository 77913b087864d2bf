"""The training stage: Stanford Dogs -> an evaluated Keras model with its model info, in a run folder.

options.py         where the data is: --data, shared by `dogtag train`, `dogtag export` and `dogtag bench`
dataset.py         Stanford Dogs (official layout or one folder per breed), splits and breed selection
preprocess.py      resizing, box crops and augmentation; pipeline.py the tf.data pipeline of photos
backbones.py       the ImageNet backbones (registry of names); efficientnet_lite.py, torch_weights.py
features.py        cached frozen-backbone features
devices.py         GPU/TPU when TensorFlow sees one, mixed precision there; layers.py the custom layer (MirrorImage)
transfer_config.py TransferConfig: every choice of a transfer run, with its default (no TensorFlow)
transfer.py        the new head, fine-tuning, blending with the ImageNet classifier, the shipped model
transfer_run.py    one transfer run, from cached features to a saved, evaluated model
scratch_params.py  ScratchParams: every hyperparameter of the CNN designed from scratch
scratch_network.py that network (VGG / residual / separable stages), its optimizer, flip TTA, warm start
image_cache.py     photos decoded once into a uint8 array on disk
batches.py         in-memory image batches for training (augmented) and evaluation
mixing.py          mixup and cutmix
checkpoints.py     resumable training: per-epoch checkpoints, one trainer per folder, same params on resume
scratch.py         one scratch run, from photos to a saved, evaluated model; search.py its KerasTuner search
saving.py          model.keras + model_info.json (thresholds, labels) and its measured CPU speed
evaluate.py        top-1/top-5, per-breed F1, confusions; wild.py the dogs-in-the-wild photos
ensemble.py        averaged finished runs (a distillation teacher)
run_record.py      the run folder's record (config, metrics, history); plots.py its figures
attach.py          export and benchmark figures attached to the run they measured
tracking.py        the same record in MLflow, where MLflow is installed; run_folder.py the folder's files
report.py          every run compared; cli.py `dogtag train`
"""
