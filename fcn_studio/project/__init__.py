"""A project on disk: the VOC folder, its class list, its bookkeeping
(.fcn_studio/state.json), the one-app lock, stored predictions and the image read-ahead."""
