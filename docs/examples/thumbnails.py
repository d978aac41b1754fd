"""Make thumbnails of batches of images: the program the documentation profiles.

Its memory comes in the three kinds memray's reports tell apart:

- the images of one batch are alive together: they make the peak;
- every thumbnail goes into a cache that is never emptied, so it is still
  alive when the program ends (a leak, as far as a profile can tell);
- each image file is read into a buffer that is dropped as soon as the image
  is decoded: a temporary allocation.

Run it as `python thumbnails.py [IMAGES_PER_BATCH [THUMBNAIL_KIB]]`.
"""

from __future__ import annotations

import sys
import time

IMAGE_BYTES = 256 * 1024  # one decoded image
FILE_BYTES = 64 * 1024  # the same image, compressed, as read from disk
BATCHES = 6

CACHE: dict[int, bytes] = {}


def read_file(number: int) -> bytes:
    time.sleep(0.001)  # the disk
    return bytes(FILE_BYTES)


def decode(data: bytes) -> bytearray:
    return bytearray(IMAGE_BYTES)


def load_image(number: int) -> bytearray:
    data = read_file(number)
    return decode(data)


def load_batch(first: int, count: int) -> list[bytearray]:
    images = []
    for number in range(first, first + count):
        images.append(load_image(number))
    return images


def make_thumbnail(image: bytearray, size: int) -> bytes:
    return bytes(memoryview(image)[:size])


def cache_thumbnails(images: list[bytearray], first: int, size: int) -> None:
    for number, image in enumerate(images, first):
        CACHE[number] = make_thumbnail(image, size)


def main() -> None:
    per_batch = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    thumbnail_kib = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    for batch in range(BATCHES):
        first = batch * per_batch
        images = load_batch(first, per_batch)
        cache_thumbnails(images, first, thumbnail_kib * 1024)
    print(f"{len(CACHE)} thumbnails in the cache")


if __name__ == "__main__":
    main()
