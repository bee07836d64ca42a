"""Running the models on camera frames, without ROS types: decoding (decode.py), the predictor (predictor.py)
with its per-frame settings (settings.py), what is published per frame (outputs.py: colours, point cloud,
scaled camera model), the latest-frame worker and rolling rates."""
