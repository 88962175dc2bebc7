"""The resident scorer (`mimizuku serve`): server loop, pipeline, reload, protocol, client."""
