"""Pages beside the APIs: the offline docs, the price calculator and run reports."""
