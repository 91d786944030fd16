"""Solutions to the exercises of tutorials/05_assembling_alexnet.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

from minialex.layers import conv_output_size


# Exercise 1
def pool5_side(image_size):
    """Side of the paper network's pool5 output for a square input of `image_size` pixels."""
    side = conv_output_size(image_size, 11, 4, 0)  # conv1 11x11 stride 4
    side = conv_output_size(side, 3, 2, 0)  # pool1 3/2
    side = conv_output_size(side, 5, 1, 2)  # conv2 5x5 pad 2 keeps the size
    side = conv_output_size(side, 3, 2, 0)  # pool2
    for _ in range(3):
        side = conv_output_size(side, 3, 1, 1)  # conv3, conv4, conv5: 3x3 pad 1 keep the size
    return conv_output_size(side, 3, 2, 0)  # pool5


# Exercise 2
def conv_cost(c_in, c_out, k, groups, out_h, out_w):
    """(number of parameters including the bias, multiply-adds for one image) of a k x k convolution."""
    per_output = (c_in // groups) * k * k  # each output value sums this many products
    params = c_out * per_output + c_out  # weights + one bias per output channel
    macs = out_h * out_w * c_out * per_output
    return params, macs
