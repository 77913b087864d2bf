"""The benchmark stage: size, accuracy, speed and memory of every model format, in one table.

`dogtag bench` measures, in one run and on the same test photos, every exported model file at each
thread count and the Keras baseline (see README.md here for what each figure means):

settings.py       how many photos and runs each figure takes (full and --quick)
photos.py         the test photos as a folder, as decoded pixels, and as generated 12 MP JPEGs
figures.py        latency, throughput and top-1, computed the same way for every runtime
edge_models.py    a .tflite / .onnx file through the edge app (Classifier, tag_folders, dogtag predict/tag)
keras_baseline.py the Keras model the seeds' way (PIL, model.predict), in its own processes
fresh_process.py  cold start and peak memory of a fresh process
machine.py        the CPU, cores, load and runtime versions recorded with the figures
report.py         ratios to Keras, targets, the markdown table, JSON and the accuracy-latency plot
run.py            one whole run; cli.py is `dogtag bench`
watch.py          `dogtag watch`: a burst of photos, delay to a row, idle CPU and memory
                  (python -m dogtag.benchmarks.watch; not part of `dogtag bench`)
"""
