"""mixup and cutmix: a training batch blended with itself in reverse order, labels blended alike."""

from __future__ import annotations

import tensorflow as tf


def _beta(alpha: float) -> tf.Tensor:
    """One draw of Beta(alpha, alpha), from two Gamma draws."""
    a, b = tf.random.gamma([], alpha), tf.random.gamma([], alpha)
    return tf.where(a + b > 0, a / (a + b), 0.5)  # both underflow to 0 only for tiny alphas


def mix_batch(x: tf.Tensor, y: tf.Tensor, mixup: float, cutmix: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Blend a batch with itself in reverse order, by mixup or cutmix (Beta alphas; 0 = that one off).

    mixup: every photo becomes lam * itself + (1 - lam) * its partner. cutmix: a box covering about
    1 - lam of the photo is pasted from its partner, and lam is then the share of pixels actually
    kept (the box is clipped at the border). Either way each label becomes lam * its own + (1 - lam)
    * the partner's. One lam per batch; with both alphas on, a fair coin picks the method. The
    draws are not seeded (nor are the augmentation layers'). With mixing on, training accuracy is
    measured against each photo's larger label share, so it no longer compares with validation's.
    """
    if mixup <= 0 and cutmix <= 0:
        return x, y
    partner_x, partner_y = tf.reverse(x, [0]), tf.reverse(y, [0])

    def by_mixup():
        lam = _beta(mixup)
        share = tf.cast(lam, x.dtype)  # lam stays float32 for the labels
        return share * x + (1 - share) * partner_x, lam

    def by_cutmix():
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        share = tf.sqrt(1.0 - _beta(cutmix))  # the box's side, as a share of the photo's side
        box_h = tf.cast(tf.round(share * tf.cast(height, tf.float32)), tf.int32)
        box_w = tf.cast(tf.round(share * tf.cast(width, tf.float32)), tf.int32)
        centre_y = tf.random.uniform([], 0, height, dtype=tf.int32)
        centre_x = tf.random.uniform([], 0, width, dtype=tf.int32)
        top, bottom = tf.maximum(centre_y - box_h // 2, 0), tf.minimum(centre_y + box_h - box_h // 2, height)
        left, right = tf.maximum(centre_x - box_w // 2, 0), tf.minimum(centre_x + box_w - box_w // 2, width)
        rows, columns = tf.range(height)[:, None], tf.range(width)[None, :]
        inside = (rows >= top) & (rows < bottom) & (columns >= left) & (columns < right)
        mask = tf.cast(inside, x.dtype)[None, :, :, None]
        lam = 1.0 - tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(height * width, tf.float32)
        return x * (1 - mask) + partner_x * mask, lam

    if mixup > 0 and cutmix > 0:
        mixed, lam = tf.cond(tf.random.uniform([]) < 0.5, by_cutmix, by_mixup)
    else:
        mixed, lam = by_mixup() if mixup > 0 else by_cutmix()
    return mixed, lam * y + (1 - lam) * partner_y
