"""The ARM protocol and nothing else: errors and their envelope, api-version gate, ids, paging, LRO headers."""
