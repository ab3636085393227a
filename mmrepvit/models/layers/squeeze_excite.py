"""Squeeze-and-excitation gate with 1x1 convs, channels reduced to a multiple of 8."""
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(value, divisor=8, min_value=None, round_limit=0.0):
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``).

    With ``round_limit`` > 0 the result is bumped up one step when rounding lost more than
    ``1 - round_limit`` of ``value`` (MobileNet's rule); RepViT's SE uses plain rounding.
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


class SqueezeExcite(nn.Module):

    def __init__(self, channels, rd_ratio=0.25, divisor=8, act_layer=nn.ReLU,
                 gate_layer=nn.Sigmoid):
        super().__init__()
        hidden = make_divisible(channels * rd_ratio, divisor)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = act_layer(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = gate_layer()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))
