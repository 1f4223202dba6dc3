// Flat, unlit colour: texture x colour, no lighting, fog or filtering of its own, so the camera
// sensor sees the layout's palette bytes as the Python renderer paints them (gamma colour space,
// see Editor/ProjectSetup.cs). Built-in render pipeline.
// _FarDepth: fragments deeper than this along the camera's axis are discarded, which is where
// the Python renderer turns ground into haze (the backdrop shows through).
// _ZTest/_ZWrite and the material's render queue let the backdrop draw first, under everything.
Shader "AgentAlign/Flat"
{
    Properties
    {
        _Color ("Colour", Color) = (1, 1, 1, 1)
        _MainTex ("Texture (point-sampled)", 2D) = "white" {}
        _FarDepth ("Haze beyond this camera depth (m)", Float) = 100000
        [Enum(UnityEngine.Rendering.CompareFunction)] _ZTest ("Depth test", Float) = 4
        _ZWrite ("Depth write (0 or 1)", Float) = 1
    }
    SubShader
    {
        Tags { "RenderType" = "Opaque" }
        Pass
        {
            Cull Off
            ZTest [_ZTest]
            ZWrite [_ZWrite]

            CGPROGRAM
            #pragma vertex vert
            #pragma fragment frag
            #include "UnityCG.cginc"

            sampler2D _MainTex;
            float4 _MainTex_ST;
            fixed4 _Color;
            float _FarDepth;

            struct appdata
            {
                float4 vertex : POSITION;
                float2 uv : TEXCOORD0;
            };

            struct v2f
            {
                float4 pos : SV_POSITION;
                float2 uv : TEXCOORD0;
                float depth : TEXCOORD1;
            };

            v2f vert(appdata v)
            {
                v2f o;
                o.pos = UnityObjectToClipPos(v.vertex);
                o.uv = TRANSFORM_TEX(v.uv, _MainTex);
                o.depth = -UnityObjectToViewPos(v.vertex).z;
                return o;
            }

            fixed4 frag(v2f i) : SV_Target
            {
                clip(_FarDepth - i.depth);
                return tex2D(_MainTex, i.uv) * _Color;
            }
            ENDCG
        }
    }
}
