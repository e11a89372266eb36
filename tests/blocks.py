"""The Inception blocks of the notebook seed (shared/seeds/002...), as it defines them."""
import torch
import torch.nn.functional as F
from torch import nn


class NaiveBlock(nn.Module):
    def __init__(self, inp_ch=256, out_ch=(128, 192, 96)):
        super().__init__()
        self.cov1x1 = nn.Conv2d(inp_ch, out_ch[0], kernel_size=1)
        self.cov3x3 = nn.Conv2d(inp_ch, out_ch[1], kernel_size=3, padding=1)
        self.cov5x5 = nn.Conv2d(inp_ch, out_ch[2], kernel_size=5, padding=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=(1, 1), padding=1)

    def forward(self, x):
        return torch.cat((F.relu(self.cov1x1(x)), F.relu(self.cov3x3(x)), F.relu(self.cov5x5(x)),
                          self.maxpool(x)), 1)


class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)

    def forward(self, x):
        return F.relu(self.conv(x), inplace=True)


class BasicConv2dBN(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionBlock(nn.Module):
    def __init__(self, inp_ch=256, out_ch=(128, 64, 192, 64, 96, 64)):
        super().__init__()
        self.branch1 = BasicConv2d(inp_ch, out_ch[0], kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(inp_ch, out_ch[1], kernel_size=1),
                                     BasicConv2d(out_ch[1], out_ch[2], kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(inp_ch, out_ch[3], kernel_size=1),
                                     BasicConv2d(out_ch[3], out_ch[4], kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=(1, 1)),
                                     BasicConv2d(inp_ch, out_ch[5], kernel_size=1, padding=1))

    def forward(self, x):
        return torch.cat((self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)), 1)


class InceptionBlockV2(nn.Module):
    def __init__(self, inp_ch=256, out_ch=(128, 64, 192, 64, 96, 64)):
        super().__init__()
        self.branch1 = BasicConv2dBN(inp_ch, out_ch[0], kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2dBN(inp_ch, out_ch[1], kernel_size=1),
                                     BasicConv2dBN(out_ch[1], out_ch[2], kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2dBN(inp_ch, out_ch[3], kernel_size=1),
                                     BasicConv2dBN(out_ch[3], out_ch[4], kernel_size=3, padding=1),
                                     BasicConv2dBN(out_ch[4], out_ch[4], kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=(1, 1)),
                                     BasicConv2dBN(inp_ch, out_ch[5], kernel_size=1, padding=1))

    def forward(self, x):
        return torch.cat((self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)), 1)
