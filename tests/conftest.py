pytest_plugins = ["streampod.pytest_kafka"]
