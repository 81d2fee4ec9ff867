"""dockerd ↔ containerd: labkit-containerd's gRPC API.

    api.proto        the services, with containerd's names and shapes (see its header)
    api_pb2.py       the messages      } generated from api.proto by grpc_tools.protoc;
    api_pb2_grpc.py  stubs, servicers  } regenerate them, never edit them

labkit-containerd serves it (labkit.containerd.server); labkit-dockerd, the lab and the tests
call it (labkit.containerd.client wraps the stubs with the namespace).
"""
