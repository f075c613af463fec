"""Command-line training, evaluation and benchmark scripts for keras_sideways."""
