"""A procedural street world with exact per-pixel ground truth (KITTI-6 classes).

``scene.py`` builds a street from a seed; ``render.py`` ray-casts it from a pinhole camera
into an RGB image plus class ids, metric depth and surface normals.
"""
