"""Solutions to the exercises of tutorials/06_training.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np


# Exercise 1
def sgd_paper_step(w, v, grad, lr, momentum, weight_decay):
    """One step of the paper's SGD for one weight array: returns (new w, new v)."""
    v_new = momentum * v - weight_decay * lr * w - lr * grad  # v <- mu v - lambda eps w - eps g
    return w + v_new, v_new  # w <- w + v


# Exercise 2
def my_confusion_matrix(labels, predictions, num_classes):
    """C[i, j] = number of images of true class i predicted as class j."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for true, predicted in zip(labels, predictions, strict=True):
        matrix[true, predicted] += 1
    return matrix
