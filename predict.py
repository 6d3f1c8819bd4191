"""Top-5 ImageNet predictions of EfficientNet-Lite0 for the example photos, offline."""

import numpy as np

import helpers


def main(name: str = "efficientnet_lite0") -> None:
    model = helpers.load_model(name)
    size = model.inputs[0].shape[1]
    photos = list(helpers.EXAMPLES)
    images = np.stack([helpers.example(photo, size) for photo in photos])
    logits = model(images.astype("float32"), training=False).numpy()
    for photo, top5 in zip(photos, helpers.decode(logits, top=5)):
        print(f"{photo:>13}: " + ", ".join(f"{label} {p:.2f}" for _, label, p in top5))


if __name__ == "__main__":
    main()
