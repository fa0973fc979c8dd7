"""Colour overlays of class maps on images (the original ``tools/utils/visualize.py``: set_img_color, show_img)."""
import cv2
import numpy as np

from tools.data.labels import IGNORE_INDEX


def colorize(class_map, colors, background=-1):
    """An RGB image with each class's colour; the ignore value and ``background`` stay black."""
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(colors)] = np.asarray(colors, np.uint8)
    if 0 <= background < len(colors):
        palette[background] = 0
    return palette[np.asarray(class_map, np.int64).clip(0, 255)]


def overlay(image, class_map, colors, background=-1, show_ignore=False):
    """0.55 x class colour + 0.45 x image where a class is drawn (cv2.addWeighted in the original)."""
    image = np.asarray(image, np.uint8)
    class_map = np.asarray(class_map)
    drawn = (class_map >= 0) & (class_map < len(colors)) & (class_map != background)
    if show_ignore:
        drawn |= class_map == IGNORE_INDEX
    blended = (0.55 * colorize(class_map, colors, background) + 0.45 * image + 0.5).astype(np.uint8)
    return np.where(drawn[:, :, None], blended, image)


def show_img(colors, background, image, gt, *preds):
    """Side by side: image | prediction overlays | label overlay, separated by 15-pixel black bars."""
    image = np.asarray(image, np.uint8)
    bar = np.zeros((image.shape[0], 15, 3), np.uint8)
    panels = [image]
    for pred in preds:
        panels += [bar, overlay(image, pred, colors, background)]
    panels += [bar, overlay(image, gt, colors, background, show_ignore=True)]
    return np.concatenate(panels, axis=1)


def legend(names, colors, background=-1, row_height=24):
    """An RGB image listing each class's colour swatch and name (the background class, drawn black, says so)."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    width = 60 + max(cv2.getTextSize(str(n) + " (not drawn)", font, scale, 1)[0][0] for n in names)
    image = np.full((row_height * len(names) + 8, width, 3), 255, np.uint8)
    for index, (name, color) in enumerate(zip(names, colors)):
        top = 4 + index * row_height
        swatch = (0, 0, 0) if index == background else tuple(int(c) for c in color)
        cv2.rectangle(image, (6, top + 3), (40, top + row_height - 3), swatch, -1)
        cv2.rectangle(image, (6, top + 3), (40, top + row_height - 3), (0, 0, 0), 1)
        text = f"{name} (not drawn)" if index == background else str(name)
        cv2.putText(image, text, (48, top + row_height - 8), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return image
