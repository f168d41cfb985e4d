"""
Pure wire rules shared by every front protocol (HTTP/1.1 and HTTP/2).

Nothing here touches a transport, a reactor or the tenant model: each
function takes bytes and returns a verdict, so that both front ends refuse
exactly the same requests and the rules can be tested exhaustively.
"""
