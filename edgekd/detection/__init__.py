"""Object detection: the layout of labels and outputs, post-processing and COCO's mAP, torch-free.

Labels: per image, a padded array (M, 5) of [class, x1, y1, x2, y2] in the input's pixels
(rows of class IGNORED, -1, are padding), so that a split of N images is one (N, M, 5) array and
every stage that slices, batches and splits arrays carries boxes unchanged.

Outputs: a detector's raw dense prediction for one image is (A, 4 + C): at each of A positions a
box [x1, y1, x2, y2] in input pixels and C class logits (one sigmoid per class). The boxes are
decoded inside the model, as YOLO-style exports do, so the only post-processing left is a score
threshold and non-maximum suppression (`boxes.decode`): the same numpy function for the bench,
the metrics and a device app, with no knowledge of the model's strides or anchors.
"""
